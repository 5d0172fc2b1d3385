"""Processes and devices of a pre-training run: torchrun's process group, the all-reduce, the checkpoint every rank
resumes, mixed precision, the DDP wrapper, the run-directory lock and the learning-rate schedule (shared by
`train.setup` and the loop)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from codec2vec.common.errors import ConfigError
from codec2vec.common.files import exclusive_lock
from codec2vec.pretrain import checkpoint as ckpt
from codec2vec.pretrain.config import PretrainConfig


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


def _load(path: Path, rank: int, world: int, step: int | None) -> tuple[Any, str | None]:
    """((weights, state, meta) of the checkpoint at `path`, None), or (None, the one-line reason it failed) with
    several processes (one process raises it); `step`: the step rank 0 loaded, which this one must hold too."""
    try:
        loaded = ckpt.load_checkpoint(path)
        if step is not None and int(loaded[1]["step"]) != step:
            raise ConfigError(f"{path} holds step {loaded[1]['step']}, rank 0 resumes step {step}")
        return loaded, None
    except Exception as e:  # noqa: BLE001 -- every rank must hear of it, or the others wait for this one forever
        if world == 1:
            raise
        return None, f"rank {rank}: {e}".splitlines()[0]


def agreed_checkpoint(run_dir: Path, rank: int, world: int, device: torch.device) -> tuple[Path, Any] | None:
    """(path, (weights, state, meta)) of the checkpoint a run resumes, None for a fresh run. Rank 0 chooses the newest
    and sends its name and step to every rank (a rank's own listing of a network file system may be stale or
    another disk's); each rank loads that checkpoint of its `run_dir` and checks the step. If any rank cannot,
    every rank raises the same one-line ConfigError: ranks never train from different weights."""
    choice: list[Any] = [None, None, None]  # checkpoint name, its step, why rank 0 could not load it
    loaded = None
    if rank == 0 and (latest := ckpt.latest_checkpoint(run_dir)) is not None:
        loaded, choice[2] = _load(latest, rank, world, None)
        choice[:2] = [latest.name, None if loaded is None else int(loaded[1]["step"])]
    if world > 1:
        dist.broadcast_object_list(choice, src=0, device=device if device.type == "cuda" else None)
    if choice[0] is None:
        return None
    path = Path(run_dir) / "checkpoints" / str(choice[0])
    if world > 1:
        mine = choice[2]
        if rank != 0:
            loaded, mine = _load(path, rank, world, int(choice[1]) if choice[1] is not None else None)
        errors: list[Any] = [None] * world
        dist.all_gather_object(errors, mine)
        if any(errors):
            raise ConfigError(
                f"run.dir: cannot resume {path.name}: {next(e for e in errors if e)} "
                "(run.dir must be one directory that every node shares)"
            )
    assert loaded is not None
    return path, loaded


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
