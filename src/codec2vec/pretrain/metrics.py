"""The loop's metrics: the run log opened at the (resumed) step, the step figures read with one host sync
(`flush`), a `metrics.jsonl` row every `train.log_every` steps and the progress line (`log_step`).

`run` is the loop's state (`state.Run`); the rows' fields are described in `runlog.py`.
"""

from __future__ import annotations

import math
import sys
import time

import torch

from codec2vec.pretrain.config import save_config
from codec2vec.pretrain.devices import all_reduce
from codec2vec.pretrain.runlog import RunLog, progress_line
from codec2vec.pretrain.state import Run


def start_log(run: Run) -> RunLog:
    """Write the resolved config, open the run's log at the resumed step, announce the run."""
    cfg = run.cfg
    log = RunLog(run.run_dir, main=run.is_main, tensorboard=cfg.run.tensorboard, progress=cfg.run.progress)
    if run.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.run_dir / "config.yaml")
        log.open(run.step)
        if run.plan_note:
            log.warn(run.plan_note)
        n_params = sum(p.numel() for p in run.model.encoder.parameters())
        what = f"resuming {run.latest.name}" if run.latest is not None else "starting"
        print(
            f"pretrain: {what} at step {run.step}/{cfg.train.steps}; encoder {n_params / 1e6:.2f}M params; "
            f"{len(run.train_ids)} train / {len(run.dev_ids)} dev utterances; {run.world} process(es) on "
            f"{run.device}; {run.precision}; {run.loader.workers} loader process(es) per rank"
            f"{' (a thread reads ahead)' if getattr(run.loader, 'prefetch', 0) and not run.loader.workers else ''}",
            file=sys.stderr,
        )
    return log


def flush(run: Run) -> None:
    """Read the pending step figures with one host sync into the log window (runlog.Window.add_steps); a
    non-finite loss stops the run, naming the step."""
    if not run.pending:
        return
    rows = torch.stack([v for _, v in run.pending]).tolist()  # (micro-batches, 3 T + 3)
    figures = [(s, row) for (s, _), row in zip(run.pending, rows)]
    run.pending.clear()
    if run.scaler is not None:  # fp16: a non-finite loss is a step the scaler skipped (counted there), not logged
        bad = {s for s, row in figures if not all(map(math.isfinite, row))}
        figures = [(s, row) for s, row in figures if s not in bad]
    steps = run.window.add_steps(figures)
    for step, loss, frames in steps:
        if not math.isfinite(loss):
            raise FloatingPointError(f"pretrain: loss became {loss} at step {step}; lower train.lr")
        run.frames_seen += frames
        run.first_loss = loss if run.first_loss is None else run.first_loss
        run.last_loss = loss


def log_step(run: Run, loss: float) -> None:
    """A metrics row every `log_every` steps (and at the end); a live progress line on a terminal, a plain one
    every `CODEC2VEC_PROGRESS_SECONDS` in a log."""
    assert run.log is not None
    tr = run.cfg.train
    elapsed = time.time() - run.started
    due = run.step % tr.log_every == 0 or run.last_step
    plain = run.log.plain_due(last=run.last_step)
    live = run.log.show and (time.time() - run.last_print > 0.2 or run.last_step)
    if due:  # the progress line between rows shows the figures of the last read: no host sync per step
        flush(run)
        figures, notes = run.model.window_metrics(lambda t: all_reduce(t, run.world))  # online: codewords in use
        run.last_row = {
            "step": run.step,
            **run.window.row(),
            "lr": run.sched.get_last_lr()[0],
            "frames_per_s": run.frames_seen / max(elapsed, 1e-9),
            **({"fp16_skipped_steps": run.skipped_steps} if run.scaler is not None else {}),
            **figures,
        }
        run.window.reset()
        run.log.write(run.last_row, "train")
        for note in notes:
            run.log.warn(note)
    if plain or live:
        run.last_print = time.time()
        # Accuracies as measured: the last row's, else the open window's (after a resume, before a row), else none.
        measured = run.last_row if run.last_row else run.window.sums.row() if run.window.steps else {}
        accs = {f"acc_{n}": float(measured[f"acc_{n}"]) for n in run.names if f"acc_{n}" in measured}
        text = progress_line(
            run.step, tr.steps, run.last_loss, accs, run.frames_seen / max(elapsed, 1e-9),
            run.last_row.get("data_wait_share", run.window.timing()["data_wait_share"] if run.window.steps else None),
            elapsed / max(1, run.steps_done) * (tr.steps - run.step),
        )  # fmt: skip
        if plain:
            run.log.line(f"pretrain: {text}")
        else:
            run.log.progress(text)


__all__ = ["flush", "log_step", "start_log"]
