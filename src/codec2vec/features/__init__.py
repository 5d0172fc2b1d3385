"""The feature layer: everything that reads representations out of a model or a store.

- `upstream.py`: `extract(model, codes, lengths)` (every layer of a frozen encoder), `Upstream` (a checkpoint or an
  exported model with its codec: audio in, layers out) and the `codec2vec extract` verb (`extract_to_dir`);
- `sources.py`: the feature sources that probes and k-means read (a pretrained checkpoint, a random init of the same
  size, the codec's summed embeddings, MFCC, `CKPT:LAYER`);
- `cache.py`: the on-disk feature cache (`FeatureDir`, `cached_features`, `feature_source`);
- `audio.py`: spectral features of the audio baselines on the shared 50 Hz grid;
- `export.py`: a checkpoint as a hub-style folder (`save_pretrained` layout);
- `s3prl.py`: the s3prl upstream expert.

Importing this package loads nothing heavy; import the module you need.
"""
