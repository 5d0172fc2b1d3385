"""The demo's settings: what each stage depends on (a stage is redone, or refused, when they change), the full and
small settings, and `CODEC2VEC_DEMO_<SETTING>` environment overrides."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from codec2vec.files import sha256_file
from codec2vec.options import from_env

TASKS: tuple[str, ...] = ("pr", "ks", "sid")  # probed tasks; PR and SID share the sentence clips
REFERENCES: tuple[str, ...] = ("codec", "random")  # feature_source kinds compared with the pre-trained model
# Package data (importlib.resources), so an installed wheel has it too; a checkout's `configs/` links here.
DEFAULT_CONFIG = Path(str(files("codec2vec") / "pretrain" / "configs" / "demo.yaml"))


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's results (saved with each stage; changing one on an existing DIR
    is refused, so a report never mixes settings)."""

    hours: float = 1.5  # synthetic audio over all groups (half of it sentences, 15% keyword clips)
    speakers: int = 24
    seed: int = 0
    snr: float = 10.0  # dB, on the degraded share
    degraded: float = 0.5  # share of clips with noise and reverberation
    dev_share: float = 0.1  # probe splits, stratified by speaker (PR, SID) or keyword (KS)
    test_share: float = 0.45
    steps: int = 600  # pre-training steps
    checkpoints: int = 4  # evenly spaced checkpoints after step 0 (the last one at `steps`)
    per_layer: bool = True  # per-layer KS and SID probes of the pre-trained model (phones: ABX per layer)
    # most epochs of the phone (CTC) heads (early stopping on dev). At 30 the pre-trained model's head was still
    # improving when it stopped, so PER against steps wobbled within the noise (0.588 0.559 0.554 0.559 0.553).
    probe_epochs: int = 60
    utterance_epochs: int = 150  # most epochs of the KS and SID heads (mean-pooled features: cheap epochs)
    # epochs without a better dev figure before stopping (CTC sits ~10 epochs on blanks; the PR dev split is 80
    # clips, so its PER is noisy: at 10 the last checkpoint's head once stopped at epoch 33 on 0.553, at 20 it ran
    # on to 0.528)
    probe_patience: int = 20
    config: str = ""  # pre-training config; "" = configs/demo.yaml
    workers: int = 2  # processes for synth and tokenize

    @classmethod
    def small(cls) -> DemoSettings:
        """The tests' setting: same stages, a corpus and a run a few minutes long on 2 cores."""
        return cls(
            hours=0.1,
            speakers=8,
            steps=40,
            checkpoints=4,
            probe_epochs=8,
            utterance_epochs=20,
            probe_patience=4,
            test_share=0.3,
        )


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
