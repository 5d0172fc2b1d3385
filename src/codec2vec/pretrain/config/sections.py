"""The sections of a pre-training config: this module's `DataConfig`, `TrainConfig`, `RunConfig`, and
`PretrainConfig`, which composes them with `ModelConfig` (model.py), `MaskingConfig` (pretrain/masking.py) and
`TargetsConfig` (pretrain/targets/base.py). `config_to_dict` turns a config back into plain data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from codec2vec.model import ModelConfig
from codec2vec.pretrain.masking import MaskingConfig
from codec2vec.pretrain.targets import TargetsConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataConfig:
    """Where the tokens come from and how they are cut into batches (frames are codec frames)."""

    store: str = ""  # token store directory
    codec: str = ""  # expected codec name (lyra, dac, ...); checked against the store when set
    dev_store: str = ""  # optional separate held-out store; else `dev_fraction` of `store`
    dev_fraction: float = 0.05  # ids whose hash falls below this go to dev (or manifest extra["split"])
    crop_frames: int = 780  # longest random crop (HuBERT: ~15.6 s = 780 frames at 50 Hz)
    min_frames: int = 4  # shorter utterances are skipped
    batch_frames: int = 4375  # padded frames per micro-batch over ALL processes (rows x longest row)
    bucket_pool: int = 2048  # crops sorted by length together into batches (pretrain/data.py); 0 = no bucketing
    row_multiple: int = 0  # rows of every batch are a multiple of this, shared evenly by the processes; 0 = the
    # world size (the plan then depends on it: set e.g. 8 to resume the same plan on 1, 2, 4 or 8 processes)
    dev_batches: int = 0  # evaluation batches per dev pass; 0 = the whole dev split
    codebook_key: str = ""  # key file of a scrambled store (`codec2vec anonymize`): keyed embedding init
    audio: str = ""  # audio baselines (model.frontend waveform/mel): manifest (jsonl id/path); "" = the store's sources
    workers: int | str = "auto"  # loader processes (0 = read in the training process); auto: 0 on the CPU, on CUDA
    # as many as a GPU needs (pretrain/loaders.py: resolve_workers)
    prefetch: int = 2  # with no workers: batches a thread of the training process reads ahead (0 = read when asked)


@dataclass
class TrainConfig:
    """The optimisation recipe (HuBERT Base defaults: AdamW, linear warm-up and decay)."""

    steps: int = 400_000
    max_seconds: float = 0.0  # > 0: also stop (log, evaluate, checkpoint) once the loop has run this long (wall clock)
    lr: float = 5e-4
    warmup_steps: int = 32_000
    final_lr_ratio: float = 0.0  # linear decay from the peak to lr * final_lr_ratio at `steps`
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.01
    grad_clip: float = 10.0  # 0 disables
    accum_steps: int = 1  # micro-batches per optimizer step
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    log_every: int = 50
    eval_every: int = 2_000  # 0 = only at the end
    ckpt_every: int = 5_000  # a checkpoint is also written at the last step
    keep_checkpoints: int = 2  # newest N kept; 0 keeps all
    threads: int = 0  # torch.set_num_threads on CPU; 0 leaves the default


@dataclass
class RunConfig:
    """Where a run writes its `config.yaml`, `metrics.jsonl`, TensorBoard logs and checkpoints."""

    dir: str = "runs/pretrain"
    tensorboard: bool = True
    progress: str = "auto"  # auto (a TTY only) | on | off


@dataclass
class PretrainConfig:
    model: ModelConfig
    masking: MaskingConfig
    targets: TargetsConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = "tiny"  # the model preset the `model` section started from


SECTIONS = ("model", "masking", "targets", "data", "train", "run")


def section_classes() -> dict[str, type]:
    return {
        "model": ModelConfig,
        "masking": MaskingConfig,
        "targets": TargetsConfig,
        "data": DataConfig,
        "train": TrainConfig,
        "run": RunConfig,
    }


def config_to_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """The fully resolved config as plain data (the `model` section keeps its `preset` first)."""
    out: dict[str, Any] = {}
    for name in SECTIONS:
        sec = dataclasses.asdict(getattr(cfg, name))
        if name == "model":
            sec = {"preset": cfg.preset, **{k: v for k, v in sec.items() if k != "preset"}}
        out[name] = sec
    return out
