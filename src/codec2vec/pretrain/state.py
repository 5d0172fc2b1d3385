"""`Run`: everything one pre-training run holds between steps (one per process), for the recipe in `train`."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codec2vec.pretrain.config import PretrainConfig
from codec2vec.pretrain.data import Crop, CropLoader
from codec2vec.pretrain.loaders import ProcessLoader
from codec2vec.pretrain.pretrainer import Pretrainer
from codec2vec.pretrain.runlog import RunLog, Window
from codec2vec.store import TokenStore


@dataclass
class Run:
    """Everything one pre-training run holds between steps (one per process)."""

    cfg: PretrainConfig
    rank: int
    world: int
    device: torch.device
    store: TokenStore
    dev_store: TokenStore
    train_ids: list[str]
    dev_ids: list[str]
    label_names: list[str]
    loader: CropLoader | ProcessLoader  # ProcessLoader: read in worker processes (audio baselines, CUDA)
    dev_plan: list[list[Crop]]
    model: Pretrainer
    ddp: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    precision: str
    window: Window
    step: int = 0
    latest: Path | None = None
    log: RunLog | None = None
    started: float = field(default_factory=time.time)
    steps_done: int = 0
    frames_seen: float = 0.0
    first_loss: float | None = None
    last_row: dict[str, Any] = field(default_factory=dict)
    last_dev: dict[str, Any] = field(default_factory=dict)
    last_print: float = 0.0
    dev_reader: Any = None  # (dev_store, plan, rank, world) -> dev batches (loaders.make_loaders)
    pending: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, figures) not yet read: `flush`
    last_loss: float = math.nan
    sync_every_step: bool = True  # read each step's figures at once (CPU); CUDA reads them per log row
    plan_note: str | None = None  # resumed on another world size: what changed (data.CropLoader.plan_change)
    skipped_steps: int = 0  # fp16: steps the grad scaler skipped (overflow), since this process started
    skip_streak: int = 0  # fp16: steps skipped in a row (train.FP16_MAX_SKIPS stops the run)
    out_of_time: bool = False  # train.max_seconds reached: this step is the run's last (logged, evaluated, saved)

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    @property
    def weights(self) -> dict[str, float]:
        return self.model.loss_weights()

    @property
    def last_step(self) -> bool:
        return self.step == self.cfg.train.steps or self.out_of_time

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run.dir)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)
