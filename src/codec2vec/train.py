"""`codec2vec pretrain`: the explicit pre-training loop (HuBERT/DinoSR recipe on codec tokens, Codec2Vec).

One process or DDP under `torchrun` (gloo on CPU, nccl on GPU); every rank reads its own rows of each
global batch (data.py). Per micro-batch the `Pretrainer` returns per-target loss sums and masked-frame
counts; the counts are all-reduced first and each rank's loss is divided by the GLOBAL count, so N
processes take exactly the step that one process takes on the same global batch. bf16 autocast on CUDA
(fp16 with a grad scaler on request), gradient accumulation, AdamW (0.9, 0.98, eps 1e-6, wd 0.01), linear
warm-up then linear decay, gradient clipping, masked accuracy per target on the dev split.

A run directory holds `config.yaml` (resolved), `metrics.jsonl` (one object per logged step: `step`,
`loss`, `acc_<target>`, ...; dev rows carry `split: "dev"`), `tb/` (TensorBoard, if installed) and
`checkpoints/step-*/` (checkpoint.py). Starting a run whose directory has checkpoints resumes it exactly:
weights, optimizer, scheduler, scaler, data position and log accumulators come back, and the RNG is
re-seeded from (seed, step, rank) at every step, so the next losses equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from codec2vec.config import PretrainConfig, config_to_dict, save_config
from codec2vec.data import CropLoader, _hash64, dev_batches, dev_plan, split_ids
from codec2vec.errors import ConfigError

if TYPE_CHECKING:
    from codec2vec.pretrainer import Pretrainer


# --- processes and devices ------------------------------------------------------------------------


def _init_distributed(device_pref: str) -> tuple[int, int, torch.device]:
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


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _lr_factor(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up from 0 to 1 over `warmup` steps, then linear decay to `final_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    frac = min(1.0, max(0.0, (step - warmup) / span))
    return 1.0 - (1.0 - final_ratio) * frac


# --- metrics --------------------------------------------------------------------------------------


class _Metrics:
    """Sums of per-target loss/correct/count over a window, in plain floats (saved with checkpoints)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.reset()

    def reset(self) -> None:
        self.loss = 0.0
        self.steps = 0
        self.frames = 0.0
        self.t = {n: [0.0, 0.0, 0.0] for n in self.names}  # loss_sum, correct, count

    def add_target(self, name: str, loss_sum: float, correct: float, count: float) -> None:
        row = self.t[name]
        row[0] += loss_sum
        row[1] += correct
        row[2] += count

    def row(self) -> dict[str, float]:
        out: dict[str, float] = {"loss": self.loss / max(1, self.steps)}
        for n, (ls, c, k) in self.t.items():
            out[f"loss_{n}"] = ls / max(1.0, k)
            out[f"acc_{n}"] = c / max(1.0, k)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "steps": self.steps,
            "frames": self.frames,
            "t": {n: list(v) for n, v in self.t.items()},
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.loss, self.steps, self.frames = float(s["loss"]), int(s["steps"]), float(s["frames"])
        self.t = {n: [float(x) for x in s["t"][n]] for n in self.names}


def _stack(out_field: dict[str, torch.Tensor], names: list[str], device: torch.device) -> torch.Tensor:
    return torch.stack([out_field[n].detach().float().reshape(()) for n in names]).to(device)  # (N_targets,)


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --- building -------------------------------------------------------------------------------------


def build_from_config(cfg: PretrainConfig, store: Any) -> Pretrainer:
    """The `Pretrainer` for `cfg` on the codec and label sets of `store`."""
    from codec2vec.pretrainer import build_pretrainer

    label_classes: dict[str, int] = {}
    if "clusters" in cfg.targets.names:
        name = cfg.targets.clusters_labels
        if name not in store.label_names():
            raise ConfigError(
                f"targets.clusters_labels: store {cfg.data.store} has no label set {name!r} "
                f"(has: {', '.join(store.label_names()) or 'none'}); run `codec2vec kmeans` first"
            )
        label_classes[name] = int(store.labels(name).num_classes)
    model = build_pretrainer(
        model=cfg.model,
        masking=cfg.masking,
        targets=cfg.targets,
        codec=store.codec,
        codebook_vectors=store.codebook_vectors(),
        label_classes=label_classes,
    )
    if cfg.data.codebook_key or store.meta.get("scrambled"):
        from codec2vec.privacy.anonymize import keyed_init

        keyed_init(model, store, cfg.data.codebook_key or None)
    return model


# Settings a resumed run may change (freezing the teacher late, re-weighting targets); the others define the model.
_RESUME_MAY_CHANGE = {"targets.online_freeze_teacher_step", "targets.weights"}


def _check_resumable(saved: dict[str, Any], cfg: PretrainConfig) -> None:
    now = config_to_dict(cfg)
    for section in ("model", "masking", "targets"):
        for key in sorted(set(saved.get(section, {})) | set(now[section])):
            a, b = saved.get(section, {}).get(key), now[section].get(key)
            if a != b and f"{section}.{key}" not in _RESUME_MAY_CHANGE:
                raise ConfigError(
                    f"{section}.{key}: the run directory's checkpoints were made with {a!r}, this config says {b!r}; "
                    f"use a new run.dir or the same setting"
                )


# --- the loop -------------------------------------------------------------------------------------


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train (or resume) the run described by `cfg`; returns a summary (steps, first/last loss, last dev row)."""
    from codec2vec import checkpoint as ckpt
    from codec2vec.store import TokenStore

    if not cfg.data.store:
        raise ConfigError("data.store: no token store given (pass data.store=PATH)")
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    rank, world, device = _init_distributed(cfg.train.device)
    try:
        return _pretrain(cfg, rank, world, device, ckpt, TokenStore)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _pretrain(
    cfg: PretrainConfig, rank: int, world: int, device: torch.device, ckpt: Any, TokenStore: Any
) -> dict[str, Any]:
    tr = cfg.train
    run_dir = Path(cfg.run.dir)
    is_main = rank == 0
    names = list(cfg.targets.names)

    store = TokenStore.open(cfg.data.store)
    if cfg.data.codec and store.codec.name != cfg.data.codec:
        raise ConfigError(
            f"data.codec: the config expects {cfg.data.codec!r} tokens, {cfg.data.store} holds {store.codec.name!r}"
        )
    dev_store = TokenStore.open(cfg.data.dev_store) if cfg.data.dev_store else store
    train_ids, dev_ids = split_ids(store, 0.0 if cfg.data.dev_store else cfg.data.dev_fraction)
    if cfg.data.dev_store:
        dev_ids = list(dev_store.ids())
    label_names = [cfg.targets.clusters_labels] if "clusters" in names else []
    loader = CropLoader(
        store,
        train_ids,
        batch_frames=cfg.data.batch_frames,
        crop_frames=cfg.data.crop_frames,
        min_frames=cfg.data.min_frames,
        seed=tr.seed,
        rank=rank,
        world_size=world,
        label_names=label_names,
    )
    plan = dev_plan(
        dev_store, dev_ids, batch_frames=cfg.data.batch_frames, crop_frames=cfg.data.crop_frames, seed=tr.seed
    )
    if cfg.data.dev_batches > 0:
        plan = plan[: cfg.data.dev_batches]

    torch.manual_seed(tr.seed)  # the initial weights are the same on every rank
    model = build_from_config(cfg, store).to(device)
    params = [p for p in model.trainable_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=tr.lr, betas=(tr.betas[0], tr.betas[1]), eps=tr.eps, weight_decay=tr.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, tr.warmup_steps, tr.steps, tr.final_lr_ratio)
    )
    precision = tr.precision if tr.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if precision in ("bf16", "fp16") and device.type != "cuda":
        raise ConfigError(f"train.precision: {precision} needs a CUDA device; use fp32 (or auto) on CPU")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    window = _Metrics(names)

    start = 0
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None:
        weights, state, meta = ckpt.load_checkpoint(latest)
        _check_resumable(meta["config"], cfg)
        model.load_state_dict(weights)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["data"])
        window.load_state_dict(state["log"])
        start = int(state["step"])
    n_params = sum(p.numel() for p in model.encoder.parameters())
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        _truncate_metrics(run_dir / "metrics.jsonl", start)
        what = f"resuming {latest.name}" if latest is not None else "starting"
        print(
            f"pretrain: {what} at step {start}/{tr.steps}; encoder {n_params / 1e6:.2f}M params; "
            f"{len(train_ids)} train / {len(dev_ids)} dev utterances; {world} process(es) on {device}; {precision}",
            file=sys.stderr,
        )

    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=getattr(cfg.model, "layer_drop", 0.0) > 0,
            broadcast_buffers=False,  # codebooks and teacher buffers are kept equal by all-reduced updates
        )
    tb = _tensorboard(run_dir / "tb", start) if (is_main and cfg.run.tensorboard) else None
    show = is_main and (cfg.run.progress == "on" or (cfg.run.progress == "auto" and sys.stderr.isatty()))
    metrics_path = run_dir / "metrics.jsonl"
    weights_of = {n: float(t.weight) for n, t in ((t.name, t) for t in model.targets)}
    first_loss: float | None = None
    last_row: dict[str, Any] = {}
    last_dev: dict[str, Any] = {}
    t0 = time.time()
    t_last_print = 0.0
    steps_done = 0
    frames_seen = 0.0

    model.train()
    for step in range(start, tr.steps):
        torch.manual_seed(_hash64("step", tr.seed, step, rank))  # dropout/layer drop: exact on resume
        opt.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(tr.accum_steps):
            batch = next(loader).to(device)
            sync = micro == tr.accum_steps - 1 or world == 1
            ctx = ddp.no_sync() if (not sync and world > 1) else contextlib.nullcontext()
            with ctx:
                with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                    out = ddp(batch)
                counts = _all_reduce(_stack(out.counts, names, device), world)  # (N_targets,) global
                loss = sum(
                    weights_of[n] * out.loss_sums[n].float() / counts[i].clamp(min=1.0) for i, n in enumerate(names)
                )
                scaled = loss * (world / tr.accum_steps)  # DDP averages gradients over ranks
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            sums = _all_reduce(
                torch.cat(
                    [
                        _stack(out.loss_sums, names, device),
                        _stack(out.correct, names, device),
                        loss.detach().float().reshape(1),
                        batch.lengths.sum().float().reshape(1),
                    ]
                ),
                world,
            )
            k = len(names)
            for i, n in enumerate(names):
                window.add_target(n, float(sums[i]), float(sums[k + i]), float(counts[i]))
            step_loss += sums[2 * k] / tr.accum_steps
            frames_seen += float(sums[2 * k + 1])
            window.frames += float(sums[2 * k + 1])
        if scaler is not None:
            scaler.unscale_(opt)
        if tr.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, tr.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        model.update(step + 1)
        done = step + 1
        steps_done += 1
        loss_value = float(step_loss)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"pretrain: loss became {loss_value} at step {done}; lower train.lr")
        if first_loss is None:
            first_loss = loss_value
        window.loss += loss_value
        window.steps += 1

        elapsed = time.time() - t0
        if done % tr.log_every == 0 or done == tr.steps:
            last_row = {
                "step": done,
                **window.row(),
                "lr": sched.get_last_lr()[0],
                "frames_per_s": frames_seen / max(elapsed, 1e-9),
            }
            window.reset()
            if is_main:
                _append(metrics_path, last_row)
                if tb is not None:
                    for key, v in last_row.items():
                        if key != "step":
                            tb.add_scalar(f"train/{key}", v, done)
        if show and (time.time() - t_last_print > 0.2 or done == tr.steps):
            t_last_print = time.time()
            left = elapsed / steps_done * (tr.steps - done)
            accs = " ".join(f"acc_{n} {v:.3f}" for n, v in ((n, last_row.get(f"acc_{n}", 0.0)) for n in names))
            sys.stderr.write(
                f"\rstep {done}/{tr.steps} loss {loss_value:.4f} {accs} "
                f"{frames_seen / max(elapsed, 1e-9):,.0f} frames/s left {_fmt_time(left)}   "
            )
            sys.stderr.flush()
        if plan and ((tr.eval_every and done % tr.eval_every == 0) or done == tr.steps):
            last_dev = {
                "step": done,
                "split": "dev",
                **evaluate(model, dev_store, plan, names, weights_of, label_names, device, amp_dtype, rank, world),
            }
            if is_main:
                _append(metrics_path, last_dev)
                if tb is not None:
                    for key, v in last_dev.items():
                        if key not in ("step", "split"):
                            tb.add_scalar(f"dev/{key}", v, done)
                if not show:
                    accs = " ".join(f"acc_{n} {last_dev[f'acc_{n}']:.3f}" for n in names)
                    print(f"pretrain: step {done} dev loss {last_dev['loss']:.4f} {accs}", file=sys.stderr)
        if (tr.ckpt_every and done % tr.ckpt_every == 0) or done == tr.steps:
            if is_main:
                state = {
                    "step": done,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "rng": {"torch": torch.get_rng_state()},
                    "data": loader.state_dict(),
                    "log": window.state_dict(),
                }
                meta = {
                    "step": done,
                    "config": config_to_dict(cfg),
                    "codec": store.codec.to_dict(),
                    "label_classes": {n: int(store.labels(n).num_classes) for n in label_names},
                    "world_size": world,
                    "encoder_params": n_params,
                    "metrics": last_row,
                }
                ckpt.save_checkpoint(ckpt.step_dir(run_dir, done), weights=model.state_dict(), state=state, meta=meta)
                ckpt.prune_checkpoints(run_dir, tr.keep_checkpoints)
            if world > 1:
                dist.barrier()
    if show:
        sys.stderr.write("\n")
    if tb is not None:
        tb.close()
    return {
        "run_dir": str(run_dir),
        "step": max(start, tr.steps),
        "steps_run": steps_done,
        "first_loss": first_loss,
        "last": last_row,
        "dev": last_dev,
        "encoder_params": n_params,
    }


@torch.no_grad()
def evaluate(
    model: Pretrainer,
    store: Any,
    plan: list,
    names: list[str],
    weights: dict[str, float],
    label_names: list[str],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """Masked loss and accuracy per target over the fixed dev batches (summed over ranks)."""
    k = len(names)
    sums = torch.zeros(3 * k, device=device)  # loss_sum, correct, count per target
    was_training = model.training
    model.eval()
    for batch in dev_batches(store, plan, rank=rank, world_size=world, label_names=label_names):
        if batch is None:
            continue
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            out = model(batch.to(device))
        sums += torch.cat(
            [
                _stack(out.loss_sums, names, device),
                _stack(out.correct, names, device),
                _stack(out.counts, names, device),
            ]
        )
    _all_reduce(sums, world)
    model.train(was_training)
    row: dict[str, float] = {}
    total = 0.0
    for i, n in enumerate(names):
        cnt = max(1.0, float(sums[2 * k + i]))
        row[f"loss_{n}"] = float(sums[i]) / cnt
        row[f"acc_{n}"] = float(sums[k + i]) / cnt
        total += weights[n] * row[f"loss_{n}"]
    return {"loss": total, **row}


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after `step` (a killed run logs past its last checkpoint; the resume re-logs them)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a kill
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)


def _tensorboard(log_dir: Path, start: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=start if start > 0 else None)
