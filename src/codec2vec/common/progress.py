"""Progress of the long verbs, one way for all: a tqdm bar on a terminal, a plain line every N seconds in a log.

A cluster job's stderr is a file: a bar there is either nothing (tqdm disabled) or a stream of carriage returns.
So when stderr is not a terminal, `Progress` prints one plain line at most every `interval()` seconds
(`CODEC2VEC_PROGRESS_SECONDS`, default 30) and one when it closes:

    tokenize: 1,200/40,000 utt (3%); 1.7 h audio, 41x real time; 2m30s elapsed, ETA 1h25m

- `Progress(desc, total, unit, enabled)`: `.update(n, note)` advances by `n` items; `note` carries the verb's own
  figures (x real time, loss and accuracies, dev metric) and is shown beside the bar or in the plain line;
  `.close()`. `enabled=False` shows nothing (`--json`).
- `Ticker(enabled)`: for loops that draw their own terminal line (pretrain): `.due()` is true once every
  `interval()` seconds when stderr is not a terminal.
- `heartbeat(desc, enabled)`: for a stage with no loop to report from (a k-means fit, a timed benchmark), a
  line `desc: running, 2m30s elapsed` every `interval()` seconds from a background thread, in a log only.
- `on_terminal()`, `interval()`, `fmt_time(seconds)`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Iterator

ENV = "CODEC2VEC_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def interval() -> float:
    """Seconds between plain progress lines (`CODEC2VEC_PROGRESS_SECONDS`, default 30; at least 0)."""
    raw = os.environ.get(ENV, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS


def on_terminal() -> bool:
    return sys.stderr.isatty()


def fmt_time(s: float) -> str:
    """1h05m, 4m09s."""
    s = int(max(0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Ticker:
    """True once per `interval()` seconds (from its start) when stderr is not a terminal and it is enabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.plain = enabled and not on_terminal()
        self.every = interval()
        self.last = time.monotonic()

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self.plain or not (force or now - self.last >= self.every):
            return False
        self.last = now
        return True


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every `interval()` seconds and one at the end."""

    def __init__(self, desc: str, total: int, *, unit: str = "utt", enabled: bool = True) -> None:
        self.desc, self.total, self.unit = desc, int(total), unit
        self.done = 0
        self.shown = -1  # `done` at the last plain line
        self.note = ""
        self.started = time.monotonic()
        self.ticker = Ticker(enabled)
        self.bar: Any = None
        if enabled and on_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit=unit, desc=desc, dynamic_ncols=True)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self.note = note or self.note
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
        elif self.ticker.due():
            self._line()

    def line(self) -> str:
        """`desc: done/total unit (pct%); note; elapsed, ETA`."""
        elapsed = time.monotonic() - self.started
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = elapsed / self.done * (self.total - self.done) if self.done and self.total else None
        eta = f", ETA {fmt_time(left)}" if left is not None and self.done < self.total else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}{pct}{note}; {fmt_time(elapsed)} elapsed{eta}"

    def _line(self) -> None:
        self.shown = self.done
        print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done != self.shown and self.ticker.due(force=True):
            self._line()


@contextlib.contextmanager
def heartbeat(desc: str, enabled: bool = True) -> Iterator[None]:
    """While the block runs and stderr is not a terminal: `desc: running, <elapsed> elapsed` every `interval()`
    seconds (a daemon thread that only sleeps in between, so timed code is not disturbed)."""
    if not enabled or on_terminal():
        yield
        return
    stop = threading.Event()
    t0 = time.monotonic()
    every = max(interval(), 0.05)

    def beat() -> None:
        while not stop.wait(every):
            print(f"{desc}: running, {fmt_time(time.monotonic() - t0)} elapsed", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name="codec2vec-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


__all__ = ["DEFAULT_SECONDS", "ENV", "Progress", "Ticker", "fmt_time", "heartbeat", "interval", "on_terminal"]
