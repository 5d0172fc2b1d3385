"""Read speed, one core: random crops from each token store (frames/s) and FLAC decoding of the same audio.

A store read is `TokenStore.read(id, a, a + n)` for random crops of `crop_frames` frames (bit-unpacking or
Huffman decoding included); a FLAC read is libsndfile seeking and decoding a random crop of the same length in
audio (`crop_frames * 320` samples at 16 kHz) from the corpus's FLAC files. Both are reported as frames/s on
the 50 Hz grid and as audio seconds per second, so `ratio_to_flac` compares like with like.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _timed(fn: Any, jobs: list[tuple[str, int, int]], budget_s: float) -> tuple[int, float]:
    """Run `fn(*job)` over `jobs` until they run out or `budget_s` passes: (frames read, seconds)."""
    frames, t0 = 0, time.perf_counter()
    for uid, a, b in jobs:
        fn(uid, a, b)
        frames += b - a
        if time.perf_counter() - t0 > budget_s:
            break
    return frames, time.perf_counter() - t0


def _jobs(frames: dict[str, int], crop: int, n: int, seed: int) -> list[tuple[str, int, int]]:
    rng = np.random.default_rng(seed)
    ids = sorted(frames)
    out = []
    for i in rng.integers(0, len(ids), n):
        uid = ids[int(i)]
        c = min(crop, frames[uid])
        a = int(rng.integers(0, frames[uid] - c + 1))
        out.append((uid, a, a + c))
    return out


def measure_reads(
    stores: dict[str, Any],
    flac_paths: dict[str, str],
    *,
    crop_frames: int = 100,
    reads: int = 2000,
    budget_s: float = 5.0,
) -> list[dict[str, Any]]:
    """One row per store and one for FLAC: `source`, `frames_per_second`, `audio_seconds_per_second`."""
    import soundfile as sf

    rows: list[dict[str, Any]] = []
    for name, store in stores.items():  # each store's own utterances (the DAC layout may hold a subset)
        jobs = _jobs({u: int(store.num_frames(u)) for u in store.ids() if u in flac_paths}, crop_frames, reads, 0)
        store.read(*jobs[0])  # warm: memory maps and decoding tables
        n, s = _timed(store.read, jobs, budget_s)
        rows.append({"source": name, "frames_per_second": n / s, "audio_seconds_per_second": n / s / 50})
    first = next(iter(stores.values()))
    jobs = _jobs({u: int(first.num_frames(u)) for u in first.ids() if u in flac_paths}, crop_frames, reads, 0)

    def flac(uid: str, a: int, b: int) -> None:
        sf.read(flac_paths[uid], start=a * 320, stop=b * 320, dtype="float32")

    n, s = _timed(flac, jobs, budget_s)
    flac_fps = n / s
    rows.append({"source": "flac", "frames_per_second": flac_fps, "audio_seconds_per_second": flac_fps / 50})
    for r in rows:
        r["ratio_to_flac"] = r["frames_per_second"] / flac_fps
        r["crop_frames"] = crop_frames
    return rows


__all__ = ["measure_reads"]
