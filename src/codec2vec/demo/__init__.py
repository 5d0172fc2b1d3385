"""`codec2vec demo --out DIR`: the whole pipeline on a built-in synthetic corpus, ending in a report.

Stages (each one writes `DIR/stages/<name>.json` with its settings, result and time when it finishes; a rerun
skips finished stages, so an interrupted demo resumes where it stopped):

    synth     eSpeak NG corpus (`corpora/synth.py`): >= 24 speakers, noise and reverberation on a share of it
    tasks     PR, KS and SID task folders re-split for large test sets (test >= 300 KS/SID, >= 100 PR at full)
    tokenize  Lyra v2 tokens of every clip that is in no test split (the model never hears test audio)
    pretrain  `configs/demo.yaml` (tiny model, reconstruction + online targets); step 0 saved to DIR/run/init
    probe-*   SUPERB-style probes (`probe.probe_with_references`): pretrained vs codec embeddings vs random init
    steps     the phone probe (PER) at every checkpoint, step 0 to the last
    abx       ABX phone discriminability, within and across speaker, for the three models
    report    DIR/results.json, DIR/report.html and its PNG plots (`report.py`)

`settings.py` holds what the stages depend on, `stages.py` the stages and `run_demo`, `report.py` the report.

Every probe figure carries a 95% bootstrap confidence interval over test items (computed by the probes).
`DemoSettings.small()` (`--small`) is the setting the tests run (minutes); the default is the full one.
"""

from __future__ import annotations

from codec2vec.demo.settings import DemoSettings, settings_from_env
from codec2vec.demo.stages import prepare_corpus, run_demo

__all__ = ["DemoSettings", "prepare_corpus", "run_demo", "settings_from_env"]
