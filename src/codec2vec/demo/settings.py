"""The demo's settings: what each stage depends on (a stage is redone, or refused, when they change), the full and
small settings, and `CODEC2VEC_DEMO_<SETTING>` environment overrides."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from codec2vec.common.files import sha256_file
from codec2vec.common.options import from_env, option

TASKS: tuple[str, ...] = ("pr", "ks", "sid")  # probed tasks; PR and SID share the sentence clips
REFERENCES: tuple[str, ...] = ("codec", "random")  # feature_source kinds compared with the pre-trained model
# Package data (importlib.resources), so an installed wheel has it too; a checkout's `configs/` links here.
DEFAULT_CONFIG = Path(str(files("codec2vec") / "pretrain" / "configs" / "demo.yaml"))


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's results (saved with each stage; changing one on an existing DIR
    is refused, so a report never mixes settings)."""

    # synthetic audio over all groups (half of it sentences, 15% keyword clips)
    hours: float = option(1.5, help="hours of synthetic audio")
    speakers: int = option(24, help="synthetic voices")
    seed: int = option(0)
    snr: float = option(10.0, help="dB of noise on the degraded share")
    degraded: float = option(0.5, help="share of clips with noise and reverberation")
    # probe splits, stratified by speaker (PR, SID) or keyword (KS)
    dev_share: float = option(0.1, help="dev share of the probe splits")
    test_share: float = option(0.45, help="test share of the probe splits")
    steps: int = option(600, help="pre-training steps")
    # evenly spaced checkpoints after step 0 (the last one at `steps`)
    checkpoints: int = option(4, help="checkpoints after step 0, evenly spaced")
    # per-layer KS and SID probes of the pre-trained model (phones: ABX per layer)
    per_layer: bool = option(True, help="skip the per-layer KS and SID probes")
    # most epochs of the phone (CTC) heads (early stopping on dev). At 30 the pre-trained model's head was still
    # improving when it stopped, so PER against steps wobbled within the noise (0.588 0.559 0.554 0.559 0.553).
    probe_epochs: int = option(60, help="most epochs of the phone (CTC) heads")
    # most epochs of the KS and SID heads (mean-pooled features: cheap epochs)
    utterance_epochs: int = option(150, help="most epochs of the KS and SID heads")
    # epochs without a better dev figure before stopping (CTC sits ~10 epochs on blanks; the PR dev split is 80
    # clips, so its PER is noisy: at 10 the last checkpoint's head once stopped at epoch 33 on 0.553, at 20 it ran
    # on to 0.528)
    probe_patience: int = option(20, help="epochs without a better dev figure before a head stops")
    config: str = option("", help="pre-training config (default: the shipped demo.yaml)")  # "" = configs/demo.yaml
    workers: int = option(2, help="processes for synth and tokenize")

    @classmethod
    def small(cls) -> DemoSettings:
        """The tests' setting: same stages, a corpus and a run a few minutes long on 2 cores."""
        corpus: dict[str, Any] = dict(hours=0.1, speakers=8, test_share=0.3)
        run: dict[str, Any] = dict(steps=40, checkpoints=4, probe_epochs=8, utterance_epochs=20, probe_patience=4)
        return cls(**corpus, **run)


# The settings each stage depends on (besides those of the stages before it). A finished stage whose settings
# changed is refused up to `pretrain` (its outputs are big and appended to); the probe stages are redone.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "synth": ("hours", "speakers", "seed", "snr", "degraded"),
    "tasks": ("dev_share", "test_share"),
    "tokenize": (),
    "pretrain": ("steps", "checkpoints", "config"),
    "probes": ("per_layer", "probe_epochs", "utterance_epochs", "probe_patience"),
}
REDO_ON_CHANGE = ("probe-", "steps", "abx", "storage")


def stage_key(settings: DemoSettings, stage: str) -> dict[str, Any]:
    """The settings that decide `stage`'s result: its own and those of every stage before it."""
    names = list(STAGE_FIELDS)
    upto = names.index(stage) if stage in STAGE_FIELDS else len(names) - 1
    key = {f: getattr(settings, f) for n in names[: upto + 1] for f in STAGE_FIELDS[n]}
    if "config" in key:  # the file's content decides, not only its name
        path = config_path(settings)
        key["config_sha256"] = sha256_file(path) if path.is_file() else None
    return key


def config_path(settings: DemoSettings) -> Path:
    return Path(settings.config) if settings.config else DEFAULT_CONFIG


def settings_from_env(base: DemoSettings) -> DemoSettings:
    """`base` with `CODEC2VEC_DEMO_<FIELD>` environment variables applied (e.g. CODEC2VEC_DEMO_STEPS=100), each
    read by `options.convert` as a flag or a config key is (ConfigError naming the variable)."""
    return from_env(base, "CODEC2VEC_DEMO_")
