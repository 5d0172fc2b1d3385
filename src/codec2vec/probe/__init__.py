"""SUPERB-style probing and ABX on frozen Codec2Vec features (SUPERB tasks and protocol, ZeroSpeech ABX).

- `feature_source(kind, ckpt)`: the upstream to probe: `pretrained`, `codec` (its codec's summed codebook
  vectors) or `random` (an untrained encoder of the same size) (`features/sources.py`; the on-disk cache in
  `features/cache.py`);
- `run_probe(task, data=DIR, source=...)`: a light head on a learned weighted sum of layers, early-stopped on
  dev, scored on test with a 95% bootstrap interval (`runner.py`; tasks in `tasks.TASKS`, heads in `heads.py`,
  metrics in `metrics.py`);
- `probe_with_references(task, ckpt=..., data=...)`: the same probe on the checkpoint and its reference points;
- `abx(data, source=...)`: label-free ABX phone discriminability, within and across speakers (`abx.py`).
"""

from __future__ import annotations

from codec2vec.features.cache import FeatureDir, cached_features
from codec2vec.features.sources import FeatureSource, feature_source
from codec2vec.probe.abx import abx
from codec2vec.probe.runner import probe_with_references, run_probe
from codec2vec.probe.tasks import TASKS

__all__ = [
    "TASKS",
    "FeatureDir",
    "FeatureSource",
    "abx",
    "cached_features",
    "feature_source",
    "probe_with_references",
    "run_probe",
]
