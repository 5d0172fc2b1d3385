"""ABX phone discriminability (ZeroSpeech 2017/2021, Libri-light; REFERENCE.md), label free, no training.

Items come from the synthetic corpora's exact frame alignments (`align`: one phone per 20 ms frame): every phone
run that is not silence and has a run on each side. As in Libri-light's ABX (ZeroSpeech 2021), an item's frames are
its own phone's (the `onset`..`offset` of the item file) and its neighbours are its context: they group the items
but are not compared. For a context (left, right), two centre phones a != b and a speaker s:
  within speaker: A, X from (left, a, right) of s (A != X), B from (left, b, right) of s;
  across speaker: A, B from s, X from (left, a, right) of another speaker s'.
A triplet is an error when X is not closer to A than to B (ties count half). The distance between two items
is the frame-wise angular distance (arccos of the cosine similarity, over pi) averaged along the DTW path.
Scores are averaged over the triplets of a cell (context, a, b, s[, s']), then over cells per speaker, then
over speakers; chance is 0.5, lower is better. The 95% interval bootstraps cells, each weighted as in that
hierarchical mean. Categories keep at most `max_items` items (seeded), which bounds the cost.

`abx(data, source=...)` scores the task folder's test split; with `layer=None` every layer is scored and the
reported layer is the one with the lowest across-speaker error on dev (not chosen on test).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec2vec.corpora.manifest import read_manifest
from codec2vec.errors import ConfigError
from codec2vec.probe.features import FeatureDir, FeatureSource, cached_features
from codec2vec.probe.metrics import bootstrap_ci

Item = tuple[str, int, int]  # (utterance id, first frame, end frame)


def triphone_items(rows: list[dict[str, Any]], frames: dict[str, int]) -> dict[tuple[str, str, str, str], list[Item]]:
    """{(left, centre, right, speaker): [centre-phone items]} from frame alignments (runs of equal labels)."""
    cats: dict[tuple[str, str, str, str], list[Item]] = defaultdict(list)
    for row in rows:
        align = list(row.get("align") or [])[: frames.get(row["id"], 0)]
        runs: list[tuple[str, int, int]] = []
        for t, ph in enumerate(align):
            if runs and runs[-1][0] == ph:
                runs[-1] = (ph, runs[-1][1], t + 1)
            else:
                runs.append((ph, t, t + 1))
        for (lp, _, _), (cp, s, e), (rp, _, _) in zip(runs, runs[1:], runs[2:]):
            if cp != "sil":
                cats[(lp, cp, rp, str(row.get("speaker", "")))].append((row["id"], s, e))
    return cats


def _dtw(d: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Batched DTW: `d (P, N, M)` frame distances, true sizes `n, m (P,)` -> cost / path length `(P,)`."""
    p, big_n, big_m = d.shape
    cost = np.full((p, big_n + 1, big_m + 1), np.inf)
    steps = np.zeros((p, big_n + 1, big_m + 1))
    cost[:, 0, 0] = 0.0
    for i in range(1, big_n + 1):
        for j in range(1, big_m + 1):
            cand = np.stack([cost[:, i - 1, j - 1], cost[:, i - 1, j], cost[:, i, j - 1]], 1)  # (P, 3)
            lens = np.stack([steps[:, i - 1, j - 1], steps[:, i - 1, j], steps[:, i, j - 1]], 1)  # (P, 3)
            k = cand.argmin(1)
            rows = np.arange(p)
            cost[:, i, j] = cand[rows, k] + d[:, i - 1, j - 1]
            steps[:, i, j] = lens[rows, k] + 1
    rows = np.arange(p)
    return cost[rows, n, m] / np.maximum(steps[rows, n, m], 1)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


class _Distances:
    """DTW distances between items of one layer, computed in size-sorted batches and memoised."""

    def __init__(self, fdir: FeatureDir, layer: int) -> None:
        self.fdir, self.layer = fdir, layer
        self.memo: dict[tuple[Item, Item], float] = {}

    def feats(self, item: Item) -> np.ndarray:
        uid, s, e = item
        return _unit(self.fdir.get(uid)[s:e, self.layer])  # (n, D)

    def compute(self, pairs: set[tuple[Item, Item]], chunk: int = 512) -> None:
        todo = sorted((q for q in pairs if q not in self.memo), key=lambda q: (q[0][2] - q[0][1], q[1][2] - q[1][1]))
        for c in range(0, len(todo), chunk):
            batch = todo[c : c + chunk]
            a = [self.feats(x) for x, _ in batch]
            b = [self.feats(y) for _, y in batch]
            n = np.array([len(x) for x in a])
            m = np.array([len(y) for y in b])
            dim = a[0].shape[1]
            pa = np.zeros((len(batch), n.max(), dim), np.float32)
            pb = np.zeros((len(batch), m.max(), dim), np.float32)
            for i, (x, y) in enumerate(zip(a, b)):
                pa[i, : len(x)], pb[i, : len(y)] = x, y
            cos = torch.einsum("pnd,pmd->pnm", torch.from_numpy(pa), torch.from_numpy(pb)).clamp(-1, 1)
            d = (torch.arccos(cos) / math.pi).double().numpy()  # (P, N, M)
            for q, v in zip(batch, _dtw(d, n, m)):
                self.memo[q] = float(v)

    def __call__(self, x: Item, y: Item) -> float:
        return self.memo[(x, y)]


def _cells(cats: dict, max_items: int, seed: int, across: bool) -> list[tuple[tuple, list, list, list]]:
    """Every (cell key, A items, B items, X items) to score."""
    rng = np.random.default_rng(seed)

    def cap(items: list[Item]) -> list[Item]:
        if len(items) <= max_items:
            return items
        return [items[i] for i in sorted(rng.choice(len(items), max_items, replace=False))]

    by_ctx: dict[tuple[str, str], dict[str, dict[str, list[Item]]]] = defaultdict(lambda: defaultdict(dict))
    for (lp, cp, rp, spk), items in sorted(cats.items()):
        by_ctx[(lp, rp)][spk][cp] = cap(items)
    cells: list[tuple[tuple, list, list, list]] = []
    for ctx, speakers in sorted(by_ctx.items()):
        for s, centres in sorted(speakers.items()):
            for a in sorted(centres):
                for b in sorted(centres):
                    if a == b:
                        continue
                    if not across:
                        if len(centres[a]) >= 2:
                            cells.append(((ctx, a, b, s), centres[a], centres[b], centres[a]))
                        continue
                    for s2, other in sorted(speakers.items()):
                        if s2 != s and a in other:
                            cells.append(((ctx, a, b, s, s2), centres[a], centres[b], other[a]))
    return cells


def _score(cells: list, dist: _Distances) -> tuple[float, list[float], int]:
    """Hierarchical mean error (cells -> speaker [-> other speaker] -> mean) and its bootstrap interval."""
    pairs = {(x, y) for _, aa, bb, xx in cells for x in xx for y in aa + bb if x != y}
    dist.compute(pairs)
    scores: dict[tuple, float] = {}
    for key, aa, bb, xx in cells:
        errs = [
            1.0 if dist(x, a) > dist(x, b) else 0.5 if dist(x, a) == dist(x, b) else 0.0
            for x in xx
            for a in aa
            if a != x
            for b in bb
        ]
        if errs:
            scores[key] = float(np.mean(errs))
    if not scores:
        return float("nan"), [float("nan"), float("nan")], 0
    groups: dict[tuple, list[tuple]] = defaultdict(list)  # speaker (pair) -> cells
    for key in scores:
        groups[key[3:]].append(key)
    by_first: dict[str, list[tuple]] = defaultdict(list)
    for g in groups:
        by_first[g[0]].append(g)
    weights = {k: 1.0 / (len(by_first) * len(by_first[g[0]]) * len(groups[g])) for g in groups for k in groups[g]}
    stats = np.array([[weights[k] * scores[k], weights[k]] for k in scores])
    return float(stats[:, 0].sum() / stats[:, 1].sum()), bootstrap_ci(stats, seed=0), len(scores)


def speaker_errors(cells: list, dist: _Distances) -> dict[str, float]:
    """Each (first) speaker's error, the hierarchical mean of its cells as in `_score` (the overall error is the
    mean over speakers): the units a paired comparison of two models resamples. Distances must be computed."""
    by_speaker: dict[str, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key, aa, bb, xx in cells:
        errs = [float(np.sign(dist(x, a) - dist(x, b)) + 1) / 2 for x in xx for a in aa if a != x for b in bb]
        if errs:
            by_speaker[key[3]][key[4:]].append(float(np.mean(errs)))
    return {s: float(np.mean([np.mean(v) for v in groups.values()])) for s, groups in sorted(by_speaker.items())}


def abx(
    data: str | Path,
    *,
    source: FeatureSource,
    layer: int | None = None,
    cache_dir: Path | None = None,
    store: str | Path | None = None,
    seed: int = 0,
    max_items: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """-> {"task": "abx", "metric": "abx_error", "value" (= across), "ci", "within", "across",
    "ci_within", "ci_across", "layer", "cells", "per_layer"?: [{"layer", "within", "across", ...}]}."""

    data = Path(data)
    fdir = cached_features(source, data, store=store, cache_dir=cache_dir, progress=progress)
    splits = {s: [r for r in read_manifest(data / f"{s}.jsonl") if r["id"] in fdir] for s in ("dev", "test")}
    if not any(r.get("align") for r in splits["test"]):
        raise ConfigError(f"{data}/test.jsonl: ABX needs frame alignments (`align`), as in synthetic PR folders")
    num = len(fdir.layers)
    layers = list(range(num)) if layer is None else [int(layer)]
    if not all(0 <= i < num for i in layers):
        raise ConfigError(f"layer {layer}: the source has layers 0..{num - 1}")

    def run(split: str, i: int) -> dict[str, Any]:
        cats = triphone_items(splits[split], {u: fdir.num_frames(u) for u in fdir.ids})
        dist = _Distances(fdir, i)
        cw, ca = _cells(cats, max_items, seed, across=False), _cells(cats, max_items, seed, across=True)
        w, wci, wn = _score(cw, dist)
        a, aci, an = _score(ca, dist)
        speakers = {"within": speaker_errors(cw, dist), "across": speaker_errors(ca, dist)}  # paired deltas
        return {"layer": i, "within": w, "across": a, "ci_within": wci, "ci_across": aci, "cells": wn + an,
                "speakers": speakers}  # fmt: skip

    per_layer = [run("test", i) for i in layers]
    chosen = layers[0]
    if len(layers) > 1:
        dev = [run("dev", i)["across"] for i in layers]
        chosen = layers[int(np.nanargmin(dev))] if not all(np.isnan(dev)) else layers[-1]
    best = per_layer[layers.index(chosen)]
    result = {
        "task": "abx",
        "metric": "abx_error",
        "value": best["across"],
        "ci": best["ci_across"],
        **best,
        "layer_weights": [1.0 if i == chosen else 0.0 for i in range(num)],
        "model": source.name,
        "source": source.kind,
        "n_test": len(splits["test"]),
    }
    if len(layers) > 1:
        result["per_layer"] = per_layer
    return result


__all__ = ["abx", "triphone_items"]
