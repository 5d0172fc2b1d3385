"""Pre-training, the recipe: it composes the library (`model.py`, `frontends/`, `codecs/`) into a training run.

- `config/`: the config sections (`PretrainConfig`), their range checks, YAML loading and overrides;
- `configs/`: the shipped configs (package data);
- `data.py`: crops of the token store, bucketing into batches, the dev split; `loaders.py`: the audio baselines'
  reads and the loader processes;
- `masking.py`: HuBERT span masks and quantizer dropout; `targets/`: reconstruction, clusters, online targets;
- `pretrainer.py`: encoder + targets -> loss; `loop.py`: `pretrain(cfg)`, the training loop (one process or torchrun);
- `metrics.py`: the loop's metrics rows and progress line;
- `state.py`, `devices.py`, `dev.py`, `inputs.py`: run state and resume, devices and precision, the dev pass, inputs
  on the device; `checkpoint.py`: self-describing checkpoints; `runlog.py`: metrics.jsonl, TensorBoard, progress.

Importing this package loads nothing heavy; import the module you need (`from codec2vec.pretrain.loop import pretrain`).
"""
