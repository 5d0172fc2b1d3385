"""A run's record: `metrics.jsonl` rows, TensorBoard scalars, the live progress line, and the log window.

`Window` accumulates what is logged every `log_every` steps (mean step loss, per-target sums, frames) and is
saved with each checkpoint, so a resumed run logs the same rows as an uninterrupted one. It also times the
window (not saved: wall time restarts on resume): `step_s` (wall seconds per step, evaluation and checkpoints
included), `data_wait_s` (seconds per step the loop waited for its next batch, summed over micro-batches),
`data_wait_share` (their share of the wall time) and `window_frames_per_s` (real frames per wall second).
`RunLog` owns the files: on start it drops rows logged after the resumed step (a killed run logs past its
last checkpoint), then appends one JSON object per row (`split: "dev"` on evaluation rows) and mirrors it to
TensorBoard. It also owns what a person reads: on a terminal one live line (`progress`), otherwise (a batch log)
that line as a plain line every `CODEC2VEC_PROGRESS_SECONDS` (`plain_due`, `progress.Ticker`); dev rows and the
closing summary (`closing_line`: last checkpoint and the next commands) as lines of their own in both.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec2vec.common.files import atomic_write
from codec2vec.common.progress import Ticker, fmt_time
from codec2vec.pretrain.pretrainer import TargetSums


@dataclass
class Window:
    """What is logged every `log_every` steps: mean step loss, per-target sums, frames (saved with checkpoints)."""

    names: list[str]
    loss: float = 0.0
    steps: int = 0
    frames: float = 0.0
    padded: float = 0.0  # rows x longest row, summed over micro-batches and ranks
    data_wait: float = 0.0  # seconds this process waited for batches in the window (not saved)
    sums: TargetSums = field(init=False)
    started: float = field(init=False)  # perf_counter at the window's start (not saved)

    def __post_init__(self) -> None:
        self.sums = TargetSums.zeros(self.names)
        self.started = time.perf_counter()

    def reset(self) -> None:
        self.loss, self.steps, self.frames, self.padded, self.data_wait = 0.0, 0, 0.0, 0.0, 0.0
        self.sums = TargetSums.zeros(self.names)
        self.started = time.perf_counter()

    def row(self) -> dict[str, float]:
        share = {"real_frame_share": self.frames / self.padded} if self.padded else {}
        return {"loss": self.loss / max(1, self.steps), **self.sums.row(), **share, **self.timing()}

    def add_steps(self, figures: list[tuple[int, list[float]]]) -> list[tuple[int, float, float]]:
        """Add the figures of whole steps, micro-batch by micro-batch in order: per micro-batch (step, [its share of
        the step's loss, (loss sum, correct, count) per target, real frames, padded frames]) as the loop (loop.py) collects
        them; returns each step's (step, loss, real frames)."""
        t = len(self.names)
        out: list[tuple[int, float, float]] = []
        loss, frames = 0.0, 0.0
        for i, (step, row) in enumerate(figures):
            sums = row[1 : 3 * t + 1]
            self.sums.add(TargetSums(*(dict(zip(self.names, sums[j * t : (j + 1) * t])) for j in range(3))))
            self.frames += row[3 * t + 1]
            self.padded += row[3 * t + 2]
            loss, frames = loss + row[0], frames + row[3 * t + 1]
            if i + 1 == len(figures) or figures[i + 1][0] != step:  # the step's last micro-batch
                out.append((step, loss, frames))
                self.loss += loss
                self.steps += 1
                loss, frames = 0.0, 0.0
        return out

    def timing(self) -> dict[str, float]:
        """Wall seconds per step, data wait per step and its share, real frames per wall second (this window)."""
        wall = max(time.perf_counter() - self.started, 1e-9)
        steps = max(1, self.steps)
        return {
            "step_s": wall / steps,
            "data_wait_s": self.data_wait / steps,
            "data_wait_share": min(1.0, self.data_wait / wall),
            "window_frames_per_s": self.frames / wall,
        }

    def state_dict(self) -> dict[str, Any]:
        t = {n: [self.sums.loss[n], self.sums.correct[n], self.sums.count[n]] for n in self.names}
        return {"loss": self.loss, "steps": self.steps, "frames": self.frames, "padded": self.padded, "t": t}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.loss, self.steps, self.frames = float(s["loss"]), int(s["steps"]), float(s["frames"])
        self.padded = float(s.get("padded", 0.0))
        self.data_wait, self.started = 0.0, time.perf_counter()  # timing restarts with the resumed process
        for n in self.names:
            self.sums.loss[n], self.sums.correct[n], self.sums.count[n] = (float(x) for x in s["t"][n])


class RunLog:
    """metrics.jsonl + TensorBoard + progress line of one run (rank 0 writes; the others hold a silent one)."""

    def __init__(self, run_dir: Path, *, main: bool, tensorboard: bool, progress: str) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.main = main
        self.tensorboard = tensorboard
        self.show = main and (progress == "on" or (progress == "auto" and sys.stderr.isatty()))
        self.ticker = Ticker(enabled=main and progress != "off" and not self.show)  # plain lines in a log
        self.tb: Any = None

    def open(self, step: int) -> None:
        """Drop rows past `step` and start TensorBoard at `step`."""
        if not self.main:
            return
        _truncate_metrics(self.path, step)
        if self.tensorboard:
            self.tb = _tensorboard(self.path.parent / "tb", step)

    def write(self, row: dict[str, Any], prefix: str) -> None:
        """Append one row (rank 0 only) and mirror its numbers to TensorBoard under `prefix/`."""
        if not self.main:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, v in row.items():
                if key not in ("step", "split") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{key}", v, row["step"])

    def progress(self, text: str) -> None:
        """Overwrite the progress line (terminal only)."""
        if self.show:
            sys.stderr.write(f"\r{text}   ")
            sys.stderr.flush()

    def plain_due(self, last: bool = False) -> bool:
        """True when a plain progress line is due (not a terminal: every `CODEC2VEC_PROGRESS_SECONDS`, and at the
        last step)."""
        return self.ticker.due(force=last)

    def line(self, text: str) -> None:
        """A line of its own on stderr (rank 0), below the live progress line on a terminal."""
        if self.main:
            print(f"{chr(10) if self.show else ''}{text}", file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        """A one-line warning on stderr (rank 0), below the progress line."""
        if self.main:
            print(f"{chr(10) if self.show else ''}pretrain: warning: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.show:
            sys.stderr.write("\n")
        if self.tb is not None:
            self.tb.close()


def progress_line(
    step: int, steps: int, loss: float, accs: dict[str, float], frames_per_s: float, wait: float | None, left: float
) -> str:
    """`step 120/400000 loss 5.1234 acc_clusters 0.123 51,000 frames/s data wait 2% ETA 3h10m`: only the
    accuracies measured so far (none before the first step's figures are in)."""
    shown = " ".join(f"{k} {v:.3f}" for k, v in accs.items())
    waited = f" data wait {100 * wait:.0f}%" if wait is not None else ""
    return (
        f"step {step}/{steps} loss {loss:.4f}{' ' + shown if shown else ''} {frames_per_s:,.0f} frames/s{waited} "
        f"ETA {fmt_time(left)}"
    )


def closing_line(run_dir: Path, step: int, latest: Path | None, store: str) -> str:
    """What pretrain prints last: where it stopped, its newest checkpoint, and the commands that come next."""
    where = f"last checkpoint {latest}" if latest is not None else "no checkpoint written"
    return (
        f"pretrain: done at step {step}; {where}; next: `codec2vec extract {run_dir} {store} --out FEATURES`, "
        f"`codec2vec probe pr --ckpt {run_dir} --data TASK_DIR`, `codec2vec export {run_dir} --out MODEL_DIR`"
    )


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
    atomic_write(path, "".join(x + "\n" for x in keep))


def _tensorboard(log_dir: Path, start: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=start if start > 0 else None)
