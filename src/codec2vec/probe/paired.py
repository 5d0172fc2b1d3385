"""Paired comparisons: the difference between two models scored on the same test items, with a 95% interval.

Two models probed on one test set share its items, so their difference is judged on the items, not on two
separate intervals: the percentile bootstrap resamples the shared items (the same draw for both models) and,
when each model was pre-trained with several seeds, the seeds too (the same seed indices for both: a seed
fixes the data order, crops and masks, so seed i of one model is paired with seed i of the other). The
statistic of one resample is the mean over the drawn seeds of each seed's corpus-level figure
(`ratio_of_sums` of per-item `(numerator, denominator)` rows: edits and reference length for PER, correct and
1 for accuracy), and the delta is model A's minus model B's. An interval that covers 0 is reported as "no
difference". ABX's unit is the speaker, and its figure is not a ratio of sums: it is the mean over phone pairs of
the mean over speakers. Its items are therefore `{speaker: {phone pair: error}}`; the statistic of a resample is
then, per pair, the mean over the drawn speakers that have it, averaged over pairs: the reported ABX figure
exactly, on the full sample.

`paired_delta(a, b)` takes `{item id: (num, den)}` or `{item id: {column: value}}` per seed (a list of dicts, or
one dict) for each model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import numpy as np

MIN_ITEMS = 30  # fewer test items than this: the interval is too rough to rank models (a warning says so)
MIN_SPEAKERS = 10  # ABX's intervals resample test speakers: with fewer than this they are too rough to rank on

ItemStats = Mapping[str, Union[Sequence[float], Mapping[str, float]]]  # id -> (num, den), or {column: value}
Seeded = Union[ItemStats, Sequence[ItemStats]]


def _per_seed(x: Seeded) -> list[ItemStats]:
    return [x] if isinstance(x, Mapping) else list(x)


def stack_items(a: Seeded, b: Seeded) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both models' stats on the items every seed of both has: `(S_a, N, 2P)`, `(S_b, N, 2P)` and the N ids.
    A row is P numerators then P denominators: P = 1 for `(num, den)` items; for `{column: value}` items (ABX:
    phone pair -> error) one column per key any of them has, denominator 1 where the item has it, else 0."""
    sa, sb = _per_seed(a), _per_seed(b)
    common = set.intersection(*(set(s) for s in sa + sb)) if sa and sb else set()
    ids = sorted(common)
    keyed = any(isinstance(s[i], Mapping) for s in sa + sb for i in ids[:1])
    cols = sorted({c for s in sa + sb for i in ids for c in s[i]}) if keyed else []  # type: ignore[union-attr]

    def row(v: Any) -> list[float]:
        if not keyed:
            return [float(x) for x in v]
        return [float(v.get(c, 0.0)) for c in cols] + [1.0 if c in v else 0.0 for c in cols]

    def arr(seeds: list[ItemStats]) -> np.ndarray:
        width = 2 * len(cols) if keyed else 2
        out = np.array([[row(s[i]) for i in ids] for s in seeds], dtype=np.float64)
        return out.reshape(len(seeds), len(ids), width)

    return arr(sa), arr(sb), ids


def resampled_stat(x: np.ndarray, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mean over drawn seeds of the corpus-level figure over drawn items: x `(S, N, 2P)`, seeds `(R, S')`, items
    `(R, N)` -> `(R,)`. The figure is, per column, the ratio of the summed numerators to the summed denominators,
    averaged over the columns any drawn item has (P = 1: the plain ratio of sums)."""
    picked = x[seeds[:, :, None], items[:, None, :]].sum(2)  # (R, S', 2P)
    p = x.shape[-1] // 2
    num, den = picked[..., :p], picked[..., p:]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)  # (R, S', P)
    has = np.isfinite(ratio)
    per_seed = np.where(has, ratio, 0.0).sum(-1) / np.maximum(has.sum(-1), 1)  # (R, S')
    return per_seed.mean(-1)


def paired_delta(
    a: Seeded,
    b: Seeded,
    *,
    lower_is_better: bool,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    names: tuple[str, str] = ("a", "b"),
    min_items: int = MIN_ITEMS,
) -> dict[str, Any]:
    """A's figure minus B's on their shared items, with a paired percentile-bootstrap interval.

    -> {"a", "b", "delta", "ci": [lo, hi], "n_items", "n_seeds", "verdict", "warning"?}. `verdict` is
    "no difference" when the interval covers 0, else "<better model> better" (by `lower_is_better`). `warning`:
    fewer shared items than `min_items` (0 for units that are not test items, such as ABX's speakers)."""
    xa, xb, ids = stack_items(a, b)
    out: dict[str, Any] = {"a": names[0], "b": names[1], "n_items": len(ids), "n_seeds": min(len(xa), len(xb))}
    if not ids or not len(xa) or not len(xb):
        return out | {"delta": float("nan"), "ci": [float("nan"), float("nan")], "verdict": "no shared test item"}
    s = min(len(xa), len(xb))
    xa, xb = xa[:s], xb[:s]
    full_s, full_i = np.arange(s)[None, :], np.arange(len(ids))[None, :]
    delta = float(resampled_stat(xa, full_s, full_i)[0] - resampled_stat(xb, full_s, full_i)[0])
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    chunk = max(1, min(100, int(2e7 // max(1, s * len(ids) * xa.shape[-1]))))  # bounds the (R, S, N, 2P) gather
    for c in range(0, n, chunk):
        r = min(chunk, n - c)
        seeds = rng.integers(0, s, size=(r, s)) if s > 1 else np.zeros((r, 1), dtype=np.int64)
        items = rng.integers(0, len(ids), size=(r, len(ids)))
        draws.append(resampled_stat(xa, seeds, items) - resampled_stat(xb, seeds, items))
    lo, hi = np.quantile(np.concatenate(draws), [(1 - level) / 2, 1 - (1 - level) / 2])
    out |= {"delta": delta, "ci": [float(lo), float(hi)], "verdict": verdict(delta, [lo, hi], lower_is_better, names)}
    if len(ids) < min_items:
        out["warning"] = small_test_warning(len(ids))
    return out


def verdict(delta: float, ci: Sequence[float], lower_is_better: bool, names: tuple[str, str]) -> str:
    """ "no difference" when `ci` covers 0; otherwise which of the two models is better."""
    lo, hi = ci
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 <= hi:
        return "no difference"
    a_better = (delta < 0) == lower_is_better
    return f"{names[0] if a_better else names[1]} better"


def small_test_warning(n_items: int, unit: str = "items", least: int = MIN_ITEMS) -> str:
    """The warning for a test set too small to rank models on (`n_items` of `unit`, fewer than `least`)."""
    return f"only {n_items} test {unit} (< {least}): intervals are rough; do not rank models on this test set"


def abx_warnings(result: Mapping[str, Any]) -> list[str]:
    """An ABX result's warnings: its intervals resample speakers, so it is their number that must not be small."""
    n = int(result["n_speakers"])
    return [small_test_warning(n, "speakers", MIN_SPEAKERS)] if n < MIN_SPEAKERS else []


def format_delta(d: dict[str, Any], percent: bool = True) -> str:
    """`a - b: +1.23 [0.40, 2.10] (a better)` in percent points (or raw with `percent=False`)."""
    k = 100.0 if percent else 1.0
    lo, hi = d["ci"]
    if d["delta"] is None or lo is None or hi is None or not np.isfinite(d["delta"]):
        return f"{d['a']} - {d['b']}: n/a ({d['verdict']})"
    return f"{d['a']} - {d['b']}: {d['delta'] * k:+.2f} [{lo * k:+.2f}, {hi * k:+.2f}] ({d['verdict']})"


__all__ = [
    "MIN_ITEMS",
    "MIN_SPEAKERS",
    "abx_warnings",
    "format_delta",
    "paired_delta",
    "small_test_warning",
    "stack_items",
    "verdict",
]
