"""Read speed, one core: random crops from each token store, in every coding a store writes, against FLAC.

A store read is `TokenStore.read(id, a, a + n)` for random crops of `crop_frames` frames, the path training
takes (`data.collate`): a bit-packed crop is a slice of the memory map; a rANS crop decodes only the blocks it
overlaps; a Huffman record (earlier versions' entropy coding) is decoded whole, then cropped. A FLAC read is
libsndfile seeking and decoding a random crop of the same length in audio (`crop_frames * 320` samples at
16 kHz) from the corpus's FLAC files. Each store is read as written (`auto`: rANS where it saves >= 1%), and the
store named by `recode` (the 6 kbps point, Lyra 30 levels) is also rewritten in every other coding
(`store.STORE_CODINGS`: packed, rANS) from the same codes, so each coding has a row.

Speeds are per core: frames over the CPU time of this process (`time.process_time`, one thread), so other
jobs on a shared machine slow neither side's figure; wall-clock figures come along. Rows: `source`, `coding`,
`crop_frames` (default 250: the 5 s crops of `configs/lyra_tiny.yaml`), `frames_per_second`,
`audio_seconds_per_second` (50 Hz grid), `ratio_to_flac` (FLAC at the same crop length), and the same figures at
the other crop length under `at_<n>_frames` (default 100).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codec2vec.bench.storage import store_coding
from codec2vec.store import TokenStore

Job = tuple[str, int, int]


def _timed(fn: Callable[[str, int, int], Any], jobs: list[Job], budget_s: float) -> dict[str, float]:
    """Run `fn(*job)` over `jobs` until they run out or `budget_s` of CPU time passes: frames/s (CPU, wall)."""
    frames, c0, w0 = 0, time.process_time(), time.perf_counter()
    for uid, a, b in jobs:
        fn(uid, a, b)
        frames += b - a
        if time.process_time() - c0 > budget_s:
            break
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"frames_per_second": frames / max(cpu, 1e-9), "wall_frames_per_second": frames / max(wall, 1e-9)}


def _jobs(frames: dict[str, int], crop: int, n: int, seed: int) -> list[Job]:
    rng = np.random.default_rng(seed)
    ids = sorted(frames)
    out = []
    for i in rng.integers(0, len(ids), n):
        uid = ids[int(i)]
        c = min(crop, frames[uid])
        a = int(rng.integers(0, frames[uid] - c + 1))
        out.append((uid, a, a + c))
    return out


def recode(store: TokenStore, coding: str, out: Path) -> TokenStore:
    """A copy of `store`'s codes (same ids, seconds) written in `coding` at `out`; returns the opened store."""
    copy = TokenStore.create(out, store.codec, store.codebook_vectors(), coding=coding)
    with copy.writer() as w:
        for uid in store.ids():
            w.add(uid, store.read_numpy(uid), seconds=float(store.entry(uid)["seconds"]))
    return TokenStore.open(out)


def _measure(
    read: Callable[[str, int, int], Any], frames: dict[str, int], crops: tuple[int, ...], reads: int, budget_s: float
) -> dict[int, dict[str, float]]:
    """Speed of `read` over random crops of each length (after a warm-up read: memory maps, decode tables)."""
    out = {}
    for crop in crops:
        jobs = _jobs(frames, crop, reads, 0)
        read(*jobs[0])
        out[crop] = _timed(read, jobs, budget_s)
    return out


def measure_reads(
    stores: dict[str, TokenStore],
    flac_paths: dict[str, str],
    *,
    crop_frames: int = 250,
    other_crop: int = 100,
    reads: int = 2000,
    budget_s: float = 5.0,
    recode_store: str = "lyra-30",
) -> list[dict[str, Any]]:
    """One row per store (as written), per other coding of `recode_store` (or of the first store when it is
    absent), and one for FLAC; see the module docstring."""
    import soundfile as sf

    from codec2vec.store.store import STORE_CODINGS

    crops = (crop_frames, other_crop)
    speeds: list[tuple[str, str, dict[int, dict[str, float]]]] = []
    name = recode_store if recode_store in stores else next(iter(stores))
    with tempfile.TemporaryDirectory() as tmp:
        targets = [(n, s, store_coding(s)) for n, s in stores.items()]
        written = targets[[n for n, _, _ in targets].index(name)][2]
        for coding in (c for c in STORE_CODINGS if c not in ("auto", written)):
            targets.append((f"{name} {coding}", recode(stores[name], coding, Path(tmp) / coding), coding))
        for label, store, coding in targets:  # each store's own utterances (the DAC layout may hold a subset)
            frames = {u: int(store.num_frames(u)) for u in store.ids() if u in flac_paths}
            speeds.append((label, coding, _measure(store.read, frames, crops, reads, budget_s)))
    first = next(iter(stores.values()))

    def flac(uid: str, a: int, b: int) -> None:
        sf.read(flac_paths[uid], start=a * 320, stop=b * 320, dtype="float32")

    frames = {u: int(first.num_frames(u)) for u in first.ids() if u in flac_paths}
    speeds.append(("flac", "flac", _measure(flac, frames, crops, reads, budget_s)))
    flac_speed = speeds[-1][2]
    rows = []
    for label, coding, by_crop in speeds:
        row: dict[str, Any] = {"source": label, "coding": coding}
        for crop in crops:
            fig = dict(by_crop[crop])
            fig["audio_seconds_per_second"] = fig["frames_per_second"] / 50
            fig["ratio_to_flac"] = fig["frames_per_second"] / flac_speed[crop]["frames_per_second"]
            row.update({"crop_frames": crop, **fig} if crop == crop_frames else {f"at_{crop}_frames": fig})
        rows.append(row)
    return rows


__all__ = ["measure_reads", "recode"]
