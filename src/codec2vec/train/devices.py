"""Processes and devices of a pre-training run: torchrun's process group, the all-reduce, mixed precision, the DDP
wrapper, the run-directory lock and the learning-rate schedule (shared by `train.setup` and the loop)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from codec2vec.config import PretrainConfig
from codec2vec.errors import ConfigError
from codec2vec.files import exclusive_lock


def init_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, device


def all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def lr_factor(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up from 0 to 1 over `warmup` steps, then linear decay to `final_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    frac = min(1.0, max(0.0, (step - warmup) / span))
    return 1.0 - (1.0 - final_ratio) * frac


def run_precision(cfg: PretrainConfig, device: torch.device) -> tuple[str, torch.dtype | None]:
    precision = cfg.train.precision if cfg.train.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if precision in ("bf16", "fp16") and device.type != "cuda":
        raise ConfigError(f"train.precision: {precision} needs a CUDA device; use fp32 (or auto) on CPU")
    return precision, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def wrap_ddp(model: nn.Module, cfg: PretrainConfig, world: int, device: torch.device) -> nn.Module:
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=getattr(cfg.model, "layer_drop", 0.0) > 0,
        broadcast_buffers=False,  # codebooks and teacher buffers are kept equal by all-reduced updates
    )


@contextlib.contextmanager
def run_lock(run_dir: Path, rank: int) -> Iterator[None]:
    """One `pretrain` per run directory: rank 0 holds an flock on `RUN/.lock` for the whole run; a second
    process is refused with one line (two would delete each other's checkpoints and interleave metrics)."""
    if rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    busy = ConfigError(f"run.dir: {run_dir} is in use by another pretrain process (it holds {run_dir / '.lock'})")
    with exclusive_lock(run_dir / ".lock", busy=busy):
        yield
