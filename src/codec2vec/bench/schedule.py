"""Budgeted, interleaved pre-training for `bench --quality`: every run gets the same compute, never wall clock.

Budgets (`kind`): `steps`, the same number of optimizer steps per run (default: the models see the same
batches, so equal steps are equal data), or `cpu`, the same process CPU seconds of the training loop per run
(`time.process_time`, all threads of this process; a machine shared with other jobs slows a run's wall clock
but not its CPU time). The runs are interleaved round-robin in chunks of `chunk` steps: each chunk resumes its
run from its last checkpoint (weights, optimizer, schedule, data position: the trainer resumes run folders), so
load that comes and goes on the machine falls on every run alike instead of on whichever ran at that time.
Each run's progress (steps, CPU seconds, chunks) is kept in `<run_dir>/budget.json`, so an interrupted
schedule resumes where it stopped.

`run_interleaved(jobs, kind=..., amount=..., chunk=...)` -> one summary per job, in order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write

BUDGETS = ("steps", "cpu")


@dataclass
class Job:
    """One pre-training run: its folder and how to make its config for a chunk ending at `steps` (`final`: the
    last chunk, which evaluates on more dev batches)."""

    name: str
    run_dir: Path
    make_config: Callable[[int, bool], Any]
    progress: dict[str, Any] = field(default_factory=dict)

    def load(self) -> None:
        path = self.run_dir / "budget.json"
        self.progress = (
            json.loads(path.read_text()) if path.is_file() else {"steps": 0, "cpu_seconds": 0.0, "chunks": 0}
        )

    def save(self) -> None:
        atomic_write(self.run_dir / "budget.json", json.dumps(self.progress, indent=1) + "\n")


def _next_steps(job: Job, kind: str, amount: float, chunk: int) -> int:
    """Steps of this job's next chunk (0: its budget is spent)."""
    done, cpu = int(job.progress["steps"]), float(job.progress["cpu_seconds"])
    if kind == "steps":
        return max(0, min(chunk, int(amount) - done))
    if cpu >= amount:
        return 0
    if done == 0:
        return min(chunk, 2)  # a short first chunk measures the run's CPU per step
    per_step = cpu / done
    return max(1, min(chunk, math.ceil((amount - cpu) / max(per_step, 1e-9))))


def run_interleaved(
    jobs: list[Job], *, kind: str, amount: float, chunk: int, say: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Round-robin chunks over `jobs` until each has spent `amount` (steps, or CPU seconds); returns, per job,
    {"name", "run_dir", "budget", "budget_amount", "steps", "cpu_seconds", "wall_seconds", "chunks", "last",
    "dev", "first_loss", "frames_seen", ...} (the last chunk's trainer summary, with totals over chunks)."""
    from codec2vec.pretrain.loop import pretrain

    if kind not in BUDGETS:
        raise ConfigError(f"--budget {kind}: choose steps or cpu")
    if amount <= 0 or chunk <= 0:
        raise ConfigError(f"budget {amount} / chunk {chunk}: both must be > 0")
    for job in jobs:
        job.load()
    summaries: dict[str, dict[str, Any]] = {}
    while True:
        todo = [(job, _next_steps(job, kind, amount, chunk)) for job in jobs]
        todo = [(job, n) for job, n in todo if n > 0]
        if not todo:
            break
        for job, n in todo:
            target = int(job.progress["steps"]) + n
            final = _next_after(job, kind, amount, n) == 0
            s = pretrain(job.make_config(target, final))
            p = job.progress
            p["steps"] = int(s["step"])
            p["cpu_seconds"] = float(p["cpu_seconds"]) + float(s["cpu_seconds"])
            p["wall_seconds"] = float(p.get("wall_seconds", 0.0)) + float(s["train_seconds"])
            p["frames_seen"] = float(p.get("frames_seen", 0.0)) + float(s["frames_seen"])
            p["chunks"] = int(p["chunks"]) + 1
            p.setdefault("first_loss", s["first_loss"])
            p["last"], p["dev"], p["encoder_params"] = s["last"], s["dev"], s["encoder_params"]
            job.save()
            say(f"{job.name}: step {p['steps']}, {p['cpu_seconds']:.0f} CPU s")
    for job in jobs:
        p = job.progress
        summaries[job.name] = {"name": job.name, "run_dir": str(job.run_dir), "budget": kind, "budget_amount": amount,
                               **p}  # fmt: skip
    return [summaries[job.name] for job in jobs]


def _next_after(job: Job, kind: str, amount: float, n: int) -> int:
    """Whether a chunk of `n` steps would be this job's last (0), by the budget as it stands before the chunk."""
    if kind == "steps":
        return max(0, int(amount) - int(job.progress["steps"]) - n)
    done, cpu = int(job.progress["steps"]), float(job.progress["cpu_seconds"])
    if done == 0:
        return 1
    return max(0, math.ceil((amount - cpu) / max(cpu / done, 1e-9)) - n)


__all__ = ["BUDGETS", "Job", "run_interleaved"]
