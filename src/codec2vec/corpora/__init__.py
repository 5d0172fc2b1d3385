"""Speech in: `audio.py` reads audio files (any common format, mono, resampled) and finds the utterances of files,
folders and manifests (with `community.py`: Kaldi, fairseq, lhotse lists). Labelled speech -> task manifests (the
format of `manifest.py`): synthetic SUPERB-like corpora made with eSpeak NG (`synth.py`, with `espeak.py`,
`lexicon.py`, `augment.py`) and loaders for the real datasets (`datasets.py`).
"""

from __future__ import annotations

from codec2vec.corpora.datasets import (
    LOADERS,
    fluent_speech_commands,
    iemocap,
    librispeech,
    speech_commands,
    voxceleb1,
)
from codec2vec.corpora.lexicon import KEYWORDS, KS_LABELS

__all__ = [
    "KEYWORDS",
    "KS_LABELS",
    "LOADERS",
    "fluent_speech_commands",
    "iemocap",
    "librispeech",
    "speech_commands",
    "voxceleb1",
]
