"""`codec2vec pretrain`: the explicit pre-training loop (HuBERT/DinoSR recipe on codec tokens, Codec2Vec).

One process or DDP under `torchrun` (gloo on CPU, nccl on GPU); every rank reads its own rows of each
global batch (data.py). Per micro-batch the `Pretrainer` returns per-target loss sums and masked-frame
counts; the counts are all-reduced first and each rank's loss is divided by the GLOBAL count, so N
processes take exactly the step that one process takes on the same global batch. bf16 autocast on CUDA
(fp16 with a grad scaler on request), gradient accumulation, AdamW (0.9, 0.98, eps 1e-6, wd 0.01), linear
warm-up then linear decay, gradient clipping, masked accuracy per target on the dev split.

A run directory holds `config.yaml` (resolved), `metrics.jsonl` (one object per logged step: `step`,
`loss`, `acc_<target>`, ..., the window's timing `step_s`, `data_wait_s`, `data_wait_share`,
`window_frames_per_s` (runlog.py); dev rows carry `split: "dev"`), `tb/` (TensorBoard, if installed) and
`checkpoints/step-*/` (checkpoint.py). Starting a run whose directory has checkpoints resumes it exactly:
weights, optimizer, scheduler, scaler, data position and log accumulators come back, and the RNG is
re-seeded from (seed, step, rank) at every step, so the next losses equal an uninterrupted run's.

The loop reads as a recipe (torchtune style): `setup` builds a `Run` (everything one run holds: store,
loader, model, optimizer, log window, step), `resume` restores it from the newest checkpoint, and `pretrain`
repeats `train_step` -> `log_step` -> `maybe_evaluate` -> `maybe_save` until the last step. The loss that
trains is `PretrainOutput.loss(counts_override=global counts)`, the one the tests check. A step's figures
for the log (losses, sums, frames) stay on the device as one vector per micro-batch: the CPU reads them every
step, CUDA once per log row or checkpoint (`flush`), as it checks `train.max_seconds`; between log rows the host
waits for the GPU once per micro-batch (the forward's `nonzero()` of the masked frames; fp16 adds the grad
scaler's scale, read to tell a skipped step). Batches come from
`data.workers` loader processes (auto: as many as the GPU needs) with their masks drawn on the CPU
(`Pretrainer.prepare`), pinned, copied with non_blocking. Rank 0 picks the checkpoint every rank resumes.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from codec2vec.common.errors import Codec2VecError, ConfigError
from codec2vec.pretrain import checkpoint as ckpt
from codec2vec.pretrain.config import (
    PretrainConfig,
    check_label_fingerprints,
    check_resumable,
    config_to_dict,
)
from codec2vec.pretrain.data import Batch, dev_plan, hash64, open_stores
from codec2vec.pretrain.dev import maybe_evaluate
from codec2vec.pretrain.devices import (
    agreed_checkpoint,
    all_reduce,
    init_distributed,
    lr_factor,
    run_lock,
    run_precision,
    wrap_ddp,
)
from codec2vec.pretrain.inputs import check_inputs, fit_input_statistics
from codec2vec.pretrain.loaders import ProcessLoader, make_loaders
from codec2vec.pretrain.metrics import flush, log_step, start_log
from codec2vec.pretrain.pretrainer import PretrainOutput, build_from_config, label_names_for
from codec2vec.pretrain.runlog import Window, closing_line
from codec2vec.pretrain.state import Run
from codec2vec.privacy.anonymize import keyed_init

FP16_MAX_SKIPS = 50  # fp16 steps in a row the grad scaler may skip (it halves its scale each time) before the run stops


def setup(cfg: PretrainConfig, *, rank: int, world: int, device: torch.device) -> Run:
    """Stores, data, model, optimizer and schedule of a fresh run (step 0)."""
    tr = cfg.train
    store, dev_store, train_ids, dev_ids = open_stores(cfg.data)
    torch.manual_seed(tr.seed)  # the initial weights are the same on every rank
    model = build_from_config(cfg, store)  # refuses a missing label set first
    keyed_init(model, store, cfg.data.codebook_key or None)  # scrambled stores (privacy/anonymize.py)
    model = model.to(device)
    label_names = label_names_for(cfg)
    # codec: store crops; waveform/mel baselines: audio crops of the same plan; in data.workers processes (auto:
    # none on the CPU, as many as the GPU needs on CUDA)
    loader, dev_reader = make_loaders(
        cfg, store, train_ids, rank=rank, world_size=world, label_names=label_names, device_type=device.type,
        masker=model.masker(),
    )  # fmt: skip
    plan = dev_plan(
        dev_store, dev_ids, batch_frames=cfg.data.batch_frames, crop_frames=cfg.data.crop_frames, seed=tr.seed
    )
    if cfg.data.dev_batches > 0:
        plan = plan[: cfg.data.dev_batches]
    params = list(model.trainable_parameters())
    opt = torch.optim.AdamW(
        params,
        lr=tr.lr,
        betas=(tr.betas[0], tr.betas[1]),
        eps=tr.eps,
        weight_decay=tr.weight_decay,
        fused=device.type in ("cpu", "cuda"),  # one kernel over all tensors: ~10x faster than the loop on CPU
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tr.warmup_steps, tr.steps, tr.final_lr_ratio))
    precision, amp_dtype = run_precision(cfg, device)
    return Run(
        cfg=cfg, rank=rank, world=world, device=device, store=store, dev_store=dev_store, train_ids=train_ids,
        dev_ids=dev_ids, label_names=label_names, loader=loader, dev_plan=plan, model=model,
        ddp=wrap_ddp(model, cfg, world, device), opt=opt, sched=sched,
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None, amp_dtype=amp_dtype,
        precision=precision, window=Window(list(model.loss_weights())), dev_reader=dev_reader,
        sync_every_step=device.type != "cuda",
    )  # fmt: skip


def resume(run: Run) -> None:
    """Restore weights, optimizer, schedule, scaler, data position and log window from the checkpoint rank 0 chose
    (`devices.agreed_checkpoint`: the newest; every rank loads it, or all stop with one line)."""
    found = agreed_checkpoint(run.run_dir, run.rank, run.world, run.device)
    if found is None:
        return
    run.latest, (weights, state, meta) = found
    check_resumable(meta["config"], run.cfg)
    check_label_fingerprints(meta.get("label_fingerprints", {}), run.store, run.label_names)
    run.model.load_state_dict(weights)
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    data = {"world_size": int(meta.get("world_size", run.world)), **state["data"]}
    run.loader.load_state_dict(data)
    plan = run.loader.plan if isinstance(run.loader, ProcessLoader) else run.loader
    run.plan_note = plan.plan_change(data)  # another world size: said in start_log
    run.window.load_state_dict(state["log"])
    run.step = int(state["step"])


# --- one step -------------------------------------------------------------------------------------


def _step_vector(out: PretrainOutput, batch: Batch, names: list[str]) -> torch.Tensor:
    """This rank's figures of one micro-batch as one float64 vector on the device, no host sync:
    (loss sum, correct, count) per target, then real and padded (rows x longest) frames.   # (3 T + 2,)"""
    parts = [*(out.loss_sums[n] for n in names), *(out.correct[n] for n in names), *(out.counts[n] for n in names)]
    vec = torch.stack([p.detach().double() for p in [*parts, batch.lengths.sum()]])  # (3 T + 1,)
    return torch.cat([vec, vec.new_full((1,), float(batch.codes.shape[0] * batch.codes.shape[-1]))])


def _micro_step(run: Run, batch: Batch, *, sync: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward of one micro-batch; returns (global weighted loss (1,), global step vector (3 T + 2,)),
    both float64 on the device and not synchronised with the host (the log reads them later, `flush`)."""
    ctx = run.ddp.no_sync() if (not sync and run.world > 1) else contextlib.nullcontext()  # type: ignore[operator]
    t = len(run.names)
    with ctx:
        with run.autocast():
            out: PretrainOutput = run.ddp(batch)
        vec = all_reduce(_step_vector(out, batch, run.names), run.world)  # one collective: sums, counts, frames
        counts = {n: vec[2 * t + i].float() for i, n in enumerate(run.names)}  # global masked frames
        loss = out.loss(counts_override=counts)
        scaled = loss * (run.world / run.cfg.train.accum_steps)  # DDP averages gradients over ranks
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
    return all_reduce(loss.detach().double().reshape(1), run.world), vec


def _next_batch(run: Run) -> Batch:
    """The next batch on the device; the wait for it (the loader's queue, or reading in this process) is logged."""
    t0 = time.perf_counter()
    batch = run.model.prepare(next(run.loader), run.step)  # masks drawn on the CPU (by the loader's workers on CUDA)
    run.window.data_wait += time.perf_counter() - t0
    return batch.to(run.device)  # non_blocking: pinned with its masks by the loader's workers on CUDA


def train_step(run: Run) -> float:
    """One optimizer step over `accum_steps` micro-batches; returns the latest loss the host has read (this
    step's on the CPU; on CUDA the figures stay on the device until the next log row, see `flush`)."""
    tr = run.cfg.train
    torch.manual_seed(hash64("step", tr.seed, run.step, run.rank))  # dropout/layer drop: exact on resume
    run.opt.zero_grad(set_to_none=True)
    for micro in range(tr.accum_steps):
        loss, vec = _micro_step(run, _next_batch(run), sync=micro == tr.accum_steps - 1)
        run.pending.append((run.step + 1, torch.cat([loss / tr.accum_steps, vec])))  # (3 T + 3,): Window.add_steps
    if run.scaler is not None:
        run.scaler.unscale_(run.opt)
    if tr.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(list(run.model.trainable_parameters()), tr.grad_clip)
    stepped = True
    if run.scaler is not None:  # fp16: the scaler skips a step whose gradients overflowed (it lowers the scale)
        scale = run.scaler.get_scale()
        run.scaler.step(run.opt)
        run.scaler.update()
        stepped = run.scaler.get_scale() >= scale
        _count_skip(run, stepped)
    else:
        run.opt.step()
    run.sched.step()
    if stepped:  # a skipped step moves neither the teacher nor the codebooks, now or later
        run.model.update(run.step + 1)
    else:
        run.model.skipped()
    run.step += 1
    run.steps_done += 1
    if run.sync_every_step:
        flush(run)  # nothing to wait for on the CPU: a diverging loss stops the run at once
    return run.last_loss


def _count_skip(run: Run, stepped: bool) -> None:
    """fp16: a step the grad scaler skipped (its gradients overflowed, whatever the loss) is counted; too many in a
    row stop the run."""
    run.skip_streak = 0 if stepped else run.skip_streak + 1
    run.skipped_steps += 0 if stepped else 1
    if run.skip_streak > FP16_MAX_SKIPS:
        raise FloatingPointError(
            f"pretrain: fp16 gradients overflowed for {run.skip_streak} steps in a row (step {run.step + 1}): it "
            "diverged; lower train.lr or use train.precision=bf16"
        )


# --- evaluation, saving (the metrics rows: metrics.py) ---------------------------------------------


def maybe_save(run: Run) -> None:
    """A checkpoint every `ckpt_every` steps and at the last step (rank 0 writes; all ranks wait)."""
    tr = run.cfg.train
    if not ((tr.ckpt_every and run.step % tr.ckpt_every == 0) or run.last_step):
        return
    flush(run)  # the log window is saved with the checkpoint
    error: str | None = None
    if run.is_main:
        state = {
            "step": run.step,
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else {},
            "rng": {"torch": torch.get_rng_state()},
            "data": run.loader.state_dict(),
            "log": run.window.state_dict(),
        }
        meta = {
            "step": run.step,
            "config": config_to_dict(run.cfg),
            "codec": run.store.codec.to_dict(),
            "frontend": run.cfg.model.frontend,  # codec, or the waveform/mel baselines (audio input)
            "label_classes": {n: int(run.store.labels(n).num_classes) for n in run.label_names},
            "label_fingerprints": {n: run.store.labels(n).fingerprint for n in run.label_names},
            "world_size": run.world,
            "encoder_params": sum(p.numel() for p in run.model.encoder.parameters()),
            "metrics": run.last_row,
        }
        try:
            ckpt.save_checkpoint(ckpt.step_dir(run.run_dir, run.step), weights=run.model.state_dict(), state=state,
                                 meta=meta)  # fmt: skip
            ckpt.prune_checkpoints(run.run_dir, tr.keep_checkpoints)
        except Codec2VecError as e:  # (a full disk) every rank stops with it, none waits at a barrier for ever
            error = str(e)
    if run.world > 1:  # rank 0 sends when it is done: the other ranks wait here, as at a barrier
        box = [error]
        dist.broadcast_object_list(box, src=0, device=run.device if run.device.type == "cuda" else None)
        error = box[0]
    if error is not None:
        raise ckpt.CheckpointError(error)


def summary(run: Run) -> dict[str, Any]:
    return {
        "run_dir": str(run.run_dir),
        "step": run.step if run.out_of_time else max(run.step, run.cfg.train.steps),
        "steps_run": run.steps_done,
        "stopped_at_max_seconds": run.out_of_time,
        "train_seconds": time.time() - run.started,
        "frames_seen": run.frames_seen,
        "first_loss": run.first_loss,
        "last": run.last_row,
        "dev": run.last_dev,
        "encoder_params": sum(p.numel() for p in run.model.encoder.parameters()),
    }


# --- the recipe -----------------------------------------------------------------------------------


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train (or resume) the run described by `cfg`; returns a summary (steps, first/last loss, last dev row)."""
    if not cfg.data.store:
        raise ConfigError("data.store: no token store given (pass data.store=PATH)")
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    rank, world, device = init_distributed(cfg.train.device)
    try:
        if rank == 0 and not Path(cfg.run.dir).exists():  # (an existing run: its lock first, then the same checks)
            check_inputs(cfg)
        with run_lock(Path(cfg.run.dir), rank):
            return _train(cfg, rank=rank, world=world, device=device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: PretrainConfig, *, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    """setup -> resume -> (train_step, log_step, maybe_evaluate, maybe_save) until the last step."""
    run = setup(cfg, rank=rank, world=world, device=device)
    resume(run)
    if run.latest is None:
        fit_input_statistics(run)
    run.log = start_log(run)
    run.model.train()
    run.window.started = time.perf_counter()  # the first row's wall time starts here, as its steps do
    run.started = time.time()  # the loop's clock (train.max_seconds, frames/s) starts here
    cpu0 = time.process_time()  # this process's CPU seconds (all its threads): a budget that load cannot move
    while run.step < cfg.train.steps and not run.out_of_time:
        loss = train_step(run)
        run.out_of_time = _out_of_time(run)
        log_step(run, loss)
        maybe_evaluate(run)
        maybe_save(run)
    run.log.close()
    getattr(run.loader, "close", lambda: None)()  # a prefetch thread stops reading
    if cfg.run.progress != "off":  # (bench --quality runs chunks of many runs quietly)
        run.log.line(closing_line(run.run_dir, run.step, ckpt.latest_checkpoint(run.run_dir), cfg.data.store))
    return summary(run) | {"cpu_seconds": time.process_time() - cpu0}


def _out_of_time(run: Run) -> bool:
    """`train.max_seconds` of this process's loop used up (rank 0's clock decides, so all ranks stop together); read
    on CUDA at log rows only (a host sync), so a run stops at the first log row past the limit."""
    limit = run.cfg.train.max_seconds
    if limit <= 0 or not (run.sync_every_step or run.step % run.cfg.train.log_every == 0):
        return False
    flag = torch.tensor([float(run.is_main and time.time() - run.started >= limit)], device=run.device)
    return bool(all_reduce(flag, run.world).item() > 0)
