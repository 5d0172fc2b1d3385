"""The feature layer: everything that reads representations out of a model, a store or audio.

- `sources.py`: the feature sources (a pretrained checkpoint's layers, a random init of the same size, the codec's
  summed embeddings, MFCC / fbank of the audio, `CKPT:LAYER`), `extract(model, codes, lengths)` (every layer of a
  frozen encoder) and the one batching loop (`FeatureSource.features`) that k-means, probes and `extract` share;
- `inputs.py`: what a source reads: a store's codes, the audio a store was made from, audio clips;
- `cache.py`: the on-disk feature folder (`FeatureDir`, `cached_features`) of probes and `codec2vec extract`;
- `upstream.py`: `Upstream` (a checkpoint or an exported model with its codec: audio in, layers out) and the
  `codec2vec extract` verb (`extract_to_dir`);
- `export.py`: a checkpoint as a hub-style folder (`save_pretrained` layout);
- `s3prl.py`: the s3prl upstream expert.

Imports run one way: sources <- inputs <- cache <- upstream <- s3prl. Importing this package loads nothing heavy;
import the module you need.
"""
