"""ABX phone discriminability as ZeroSpeech computes it (Libri-light's ABX, zerospeech-libriabx2), label free.

Items are read from the task folder's Libri-light item files (`corpora/items.py`: `test.item`, triphone items,
by default; `items="phoneme"` reads `test.phoneme.item`, the centre phone alone), or made from the manifest's
`align` column where the folder has none. An item's frames are those the reference takes for its onset and
offset: `ceil(onset / 0.02 - 0.5)` to `floor(offset / 0.02 - 0.5)` (exclusive); items with none are skipped.
Every frame is unit-normalised; the frame distance is the angle over pi, and a zero vector is at the maximal
distance 1 from any other vector (0 from another zero vector). Two items' distance is the DTW cost over the
path length (the reference's path, ties resolved as it does). Items are grouped by (context, speaker, phone):
  within speaker: for a context c, speaker s and phones a != b, X and A from (c, s, a) (X != A), B from (c, s, b);
  across speaker: A and B from (c, s, a) and (c, s, b), X from (c, s', a) for up to `max_x` other speakers s'.
A group holds at most `max_items` items, re-sampled at each use (seeded), as the reference does. A cell's score
is the share of (X, A, B) with d(X, A) > d(X, B), ties counting half. Cells are averaged over contexts (across:
over contexts and X speakers together), then over speakers, then over phone pairs; chance is 0.5. The 95%
interval resamples speakers (the A/B speaker) with replacement and recomputes that mean.

`abx(data, source=...)` scores the test split; with `layer=None` every layer is scored and the reported layer is
the one with the lowest across-speaker error on dev (not chosen on test).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.corpora.items import Item, item_path, items_from_align, read_items
from codec2vec.corpora.manifest import read_manifest
from codec2vec.features.cache import cached_features
from codec2vec.features.sources import FeatureSource

FRAME_S = 0.02
Span = tuple[str, int, int]  # (utterance id, first frame, end frame)
Group = list[Span]


def frame_span(onset: float, offset: float, num_frames: int, frame_s: float = FRAME_S) -> tuple[int, int]:
    """The reference's frames of an item: `[start, end)` (empty when `end <= start`)."""
    step = 1.0 / frame_s
    return max(0, int(math.ceil(step * onset - 0.5))), min(num_frames, int(math.floor(step * offset - 0.5)))


def unit_frames(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(T, D)` -> unit rows `(T, D)` float32 and the zero-vector mask `(T,)`."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.sqrt((x * x).sum(-1, keepdims=True))
    zero = norm[:, 0] == 0
    return x / np.where(norm == 0, 1.0, norm), zero


def dtw_batch(d: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Libri-light's normalised DTW, batched: `d (P, N, M)` float32 frame distances, true sizes `n, m (P,)` ->
    cost over path length `(P,)` float32. The path length is the reference's: back from the end, diagonal when
    it is not dearer than left and up, else left when not dearer than up, else up."""
    p, big_n, big_m = d.shape
    d = d.astype(np.float32)
    cost = np.full((p, big_n, big_m), np.inf, np.float32)
    cost[:, 0, 0] = d[:, 0, 0]
    for r in range(1, big_n):
        cost[:, r, 0] = d[:, r, 0] + cost[:, r - 1, 0]
    for c in range(1, big_m):
        cost[:, 0, c] = d[:, 0, c] + cost[:, 0, c - 1]
    for r in range(1, big_n):
        for c in range(1, big_m):
            best = np.minimum(np.minimum(cost[:, r - 1, c], cost[:, r - 1, c - 1]), cost[:, r, c - 1])
            cost[:, r, c] = d[:, r, c] + best
    rows = np.arange(p)
    i: np.ndarray = n.astype(np.int64) - 1
    j: np.ndarray = m.astype(np.int64) - 1
    final = cost[rows, i, j]
    length = np.ones(p, np.int64)
    while True:
        live = np.logical_and(i > 0, j > 0)
        if not live.any():
            break
        up, left, diag = cost[rows, i - 1, j], cost[rows, i, j - 1], cost[rows, i - 1, j - 1]
        go_diag = live & (diag <= left) & (diag <= up)
        go_left = live & ~go_diag & (left <= up)
        go_up = live & ~go_diag & ~go_left
        i = i - (go_diag | go_up)
        j = j - (go_diag | go_left)
        length += live
    length += np.where(i == 0, j, 0) + np.where(j == 0, i, 0)
    return (final.astype(np.float64) / length).astype(np.float32)


class _Distances:
    """Item-to-item DTW distances of one layer, computed in size-sorted batches and memoised."""

    def __init__(self, frames: Callable[[str], np.ndarray]) -> None:
        self.frames = frames  # uid -> (T, D)
        self.unit: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.memo: dict[tuple[Span, Span], float] = {}

    def feats(self, span: Span) -> tuple[np.ndarray, np.ndarray]:
        uid, s, e = span
        if uid not in self.unit:
            self.unit[uid] = unit_frames(self.frames(uid))
        x, z = self.unit[uid]
        return x[s:e], z[s:e]

    def compute(self, pairs: set[tuple[Span, Span]], chunk: int = 512) -> None:
        todo = sorted((q for q in pairs if q not in self.memo), key=lambda q: (q[0][2] - q[0][1], q[1][2] - q[1][1]))
        for c in range(0, len(todo), chunk):
            batch = todo[c : c + chunk]
            a, b = [self.feats(x) for x, _ in batch], [self.feats(y) for _, y in batch]
            n, m = np.array([len(x) for x, _ in a]), np.array([len(y) for y, _ in b])
            dim = a[0][0].shape[1]
            pa, pb = np.zeros((len(batch), n.max(), dim), np.float32), np.zeros((len(batch), m.max(), dim), np.float32)
            za, zb = np.zeros((len(batch), n.max()), bool), np.zeros((len(batch), m.max()), bool)
            for k, ((x, zx), (y, zy)) in enumerate(zip(a, b)):
                pa[k, : len(x)], pb[k, : len(y)], za[k, : len(x)], zb[k, : len(y)] = x, y, zx, zy
            cos = torch.einsum("pnd,pmd->pnm", torch.from_numpy(pa), torch.from_numpy(pb)).clamp(-1, 1)
            d = (torch.arccos(cos) / math.pi).numpy()  # (P, N, M) float32
            d = np.where(za[:, :, None] != zb[:, None, :], np.float32(1.0), d)
            d = np.where(za[:, :, None] & zb[:, None, :], np.float32(0.0), d)
            for q, v in zip(batch, dtw_batch(d, n, m)):
                self.memo[q] = float(v)

    def __call__(self, x: Span, y: Span) -> float:
        return self.memo[(x, y)]


def _groups(items: list[Item], num_frames: Callable[[str], int | None], frame_s: float) -> dict[tuple, Group]:
    """{(context, speaker, phone): spans} of the items whose utterance has features and whose span is not empty."""
    groups: dict[tuple, Group] = defaultdict(list)
    for it in items:
        t = num_frames(it.file)
        if t is None:
            continue
        s, e = frame_span(it.onset, it.offset, t, frame_s)
        if s < t and e > s:
            groups[(f"{it.prev}+{it.next}", it.speaker, it.phone)].append((it.file, s, e))
    return groups


def _cells(groups: dict[tuple, Group], *, across: bool, max_items: int, max_x: int, seed: int) -> list[tuple]:
    """Every (cell key, A, B, X) to score: keys (context, speaker, a, b) within, (..., X speaker) across."""
    rng = random.Random(seed)

    def take(g: Group) -> Group:
        return rng.sample(g, max_items) if len(g) > max_items else list(g)

    tree: dict[str, dict[str, dict[str, Group]]] = defaultdict(lambda: defaultdict(dict))
    for (ctx, spk, ph), g in sorted(groups.items()):
        tree[ctx][spk][ph] = g
    cells: list[tuple] = []
    for ctx, speakers in sorted(tree.items()):
        for s, phones in sorted(speakers.items()):
            for a in sorted(phones):
                if not across and len(phones[a]) < 2:
                    continue
                xs = [s2 for s2 in sorted(speakers) if s2 != s and a in speakers[s2]] if across else [s]
                if len(xs) > max_x:
                    xs = rng.sample(xs, max_x)
                for s2 in xs:
                    for b in sorted(phones):
                        if b != a:
                            ga, gb = take(phones[a]), take(phones[b])
                            gx = take(speakers[s2][a]) if across else ga
                            cells.append(((ctx, s, a, b, s2) if across else (ctx, s, a, b), ga, gb, gx))
    return cells


def _cell_error(aa: Group, bb: Group, xx: Group, dist: _Distances, symmetric: bool) -> float:
    """One cell's error: the share of (X, A, B) with X not closer to A than to B (ties half)."""
    dxb = np.array([[dist(x, b) for b in bb] for x in xx], np.float32)  # (Nx, Nb)
    top = dxb.max() + 1  # the reference's diagonal (X == A): never closer, never tied
    dxa = np.array(
        [[top if symmetric and i == j else dist(x, a) for j, a in enumerate(aa)] for i, x in enumerate(xx)], np.float32
    )
    right = (dxa[:, :, None] < dxb[:, None, :]).sum() + 0.5 * (dxa[:, :, None] == dxb[:, None, :]).sum()
    n_pos = len(aa) * (len(aa) - 1) if symmetric else len(aa) * len(xx)
    return 1.0 - float(right) / (n_pos * len(bb))


def _score(
    cells: list[tuple], dist: _Distances, *, symmetric: bool, seed: int
) -> tuple[float, list[float], int, dict[str, dict[str, float]]]:
    """The reference's mean (contexts [and X speakers] -> speakers -> phone pairs), a speaker bootstrap, the cell
    count and each speaker's error per phone pair (`{speaker: {"a b": error}}`: the units a paired comparison
    resamples, `probe/paired.py`)."""
    pairs: set[tuple[Span, Span]] = set()
    for _, aa, bb, xx in cells:
        for i, x in enumerate(xx):
            pairs.update((x, y) for y in (aa[i + 1 :] if symmetric else aa))  # d(x_i, a_j) = d(a_j, x_i)
            pairs.update((x, y) for y in bb)
    if symmetric:  # the reference computes d(x_i, a_j) for j > i and mirrors it
        dist.compute(pairs)
        for x, y in list(dist.memo):
            dist.memo.setdefault((y, x), dist.memo[(x, y)])
    else:
        dist.compute(pairs)
    per: dict[tuple, list[float]] = defaultdict(list)  # (speaker, a, b) -> cell errors
    for key, aa, bb, xx in cells:
        per[(key[1], key[2], key[3])].append(_cell_error(aa, bb, xx, dist, symmetric))
    if not per:
        return float("nan"), [float("nan"), float("nan")], 0, {}
    speakers = sorted({k[0] for k in per})
    phone_pairs = sorted({k[1:] for k in per})
    m = np.full((len(speakers), len(phone_pairs)), np.nan)  # (S, pairs)
    for (s, a, b), errs in per.items():
        m[speakers.index(s), phone_pairs.index((a, b))] = np.mean(errs)
    value = _speaker_mean(m, np.ones((1, len(speakers))))[0]
    counts = np.random.default_rng(seed).multinomial(len(speakers), np.full(len(speakers), 1 / len(speakers)), 1000)
    boot = _speaker_mean(m, counts.astype(np.float64))
    lo, hi = np.nanquantile(boot, [0.025, 0.975]) if np.isfinite(boot).any() else (np.nan, np.nan)
    by_speaker = {s: {" ".join(pp): float(m[i, j]) for j, pp in enumerate(phone_pairs) if np.isfinite(m[i, j])}
                  for i, s in enumerate(speakers)}  # fmt: skip
    return float(value), [float(lo), float(hi)], len(cells), by_speaker


def _speaker_mean(m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`m (S, pairs)` per-speaker errors (NaN: absent), speaker weights `w (R, S)` -> `(R,)` means over pairs of
    the weighted mean over speakers (pairs no drawn speaker has are left out)."""
    present = np.isfinite(m)
    num, den = w @ np.where(present, m, 0.0), w @ present.astype(np.float64)  # (R, pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pair = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        return (
            np.nanmean(np.where(np.isfinite(per_pair), per_pair, np.nan), 1)
            if per_pair.size
            else np.full(len(w), np.nan)
        )


def split_items(data: Path, split: str, kind: str, rows: list[dict[str, Any]]) -> list[Item]:
    """The split's items: its item file, else items made from the manifest's alignments."""
    path = item_path(data, split, kind)
    return read_items(path) if path.is_file() else items_from_align(rows, kind=kind)


def require_test_items(data: str | Path, kind: str = "triphone") -> None:
    """A clear error when the task folder gives no ABX test item (no item file and no `align` column)."""
    data = Path(data)
    path = item_path(data, "test", kind)
    if path.is_file():
        if not read_items(path):
            raise ConfigError(f"{path}: no ABX test item (the item file is empty)")
        return
    rows = read_manifest(data / "test.jsonl") if (data / "test.jsonl").is_file() else []
    if not any(r.get("align") for r in rows):
        raise ConfigError(f"{path}: no ABX test item (no item file, and {data / 'test.jsonl'} has no `align` column)")


def score_layer(
    items: list[Item],
    frames: Callable[[str], np.ndarray | None],
    *,
    max_items: int = 10,
    max_x: int = 5,
    seed: int = 0,
    frame_s: float = FRAME_S,
) -> dict[str, Any]:
    """Within- and across-speaker ABX of one feature set: `frames(uid)` -> `(T, D)` or None (no features).
    Returns {"within", "across", "ci_within", "ci_across", "cells", "speakers": {side: {speaker: {pair: error}}}}."""
    cache: dict[str, np.ndarray | None] = {}

    def get(uid: str) -> np.ndarray | None:
        if uid not in cache:
            cache[uid] = frames(uid)
        return cache[uid]

    def num(uid: str) -> int | None:
        x = get(uid)
        return None if x is None else len(x)

    groups = _groups(items, num, frame_s)
    dist = _Distances(lambda uid: get(uid))  # type: ignore[arg-type,return-value]
    kw = dict(max_items=max_items, max_x=max_x, seed=seed)
    w, wci, wn, ws = _score(_cells(groups, across=False, **kw), dist, symmetric=True, seed=seed)
    a, aci, an, acs = _score(_cells(groups, across=True, **kw), dist, symmetric=False, seed=seed)
    return {"within": w, "across": a, "ci_within": wci, "ci_across": aci, "cells": wn + an,
            "speakers": {"within": ws, "across": acs}}  # fmt: skip


def abx(
    data: str | Path,
    *,
    source: FeatureSource,
    layer: int | None = None,
    items: str = "triphone",
    cache_dir: Path | None = None,
    store: str | Path | None = None,
    seed: int = 0,
    max_items: int = 10,
    max_x: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """-> {"task": "abx", "metric": "abx_error", "value" (= across), "ci", "within", "across", "ci_within",
    "ci_across", "layer", "items", "n_items", "cells", "per_layer"?: [{"layer", "within", "across", ...}]}.
    No test item (no item file and no alignment, or none with features) is an error."""
    data = Path(data)
    require_test_items(data, items)
    fdir = cached_features(source, data, store=store, cache_dir=cache_dir, progress=progress)
    rows = {s: [r for r in read_manifest(data / f"{s}.jsonl") if r["id"] in fdir] for s in ("dev", "test")}
    its = {s: [i for i in split_items(data, s, items, rows[s]) if i.file in fdir] for s in ("dev", "test")}
    if not its["test"]:
        where = item_path(data, "test", items)
        raise ConfigError(
            f"{where}: no ABX test item (no item file, or none of its files has features, and no `align`)"
        )
    num = len(fdir.layers)
    layers = list(range(num)) if layer is None else [int(layer)]
    if not all(0 <= i < num for i in layers):
        raise ConfigError(f"layer {layer}: the source has layers 0..{num - 1}")

    def run(split: str, i: int) -> dict[str, Any]:
        r = score_layer(its[split], lambda u: fdir.get(u)[:, i], max_items=max_items, max_x=max_x, seed=seed)
        return {"layer": i, **r}

    per_layer = [run("test", i) for i in layers]
    chosen = layers[0]
    if len(layers) > 1 and its["dev"]:
        dev = [run("dev", i)["across"] for i in layers]
        chosen = layers[int(np.nanargmin(dev))] if not all(np.isnan(dev)) else layers[-1]
    best = per_layer[layers.index(chosen)]
    result = {
        "task": "abx",
        "metric": "abx_error",
        "value": best["across"],
        "ci": best["ci_across"],
        **best,
        "items": items,
        "n_items": len(its["test"]),
        "layer_weights": [1.0 if i == chosen else 0.0 for i in range(num)],
        "model": source.name,
        "source": source.kind,
        "n_test": len(rows["test"]),
        "n_speakers": max(len(best["speakers"][side]) for side in ("within", "across")),  # scored: the bootstrap's unit
    }
    if len(layers) > 1:
        result["per_layer"] = per_layer
    return result


__all__ = ["abx", "dtw_batch", "frame_span", "require_test_items", "score_layer", "split_items", "unit_frames"]
