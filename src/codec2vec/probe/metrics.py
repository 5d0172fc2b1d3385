"""Probe metrics: edit distance (PER over phones, WER over words), accuracy, and 95% bootstrap intervals.

Error rates follow SUPERB/sclite: the summed Levenshtein distance (substitutions + deletions + insertions)
over the summed reference lengths, corpus level, not a mean of per-utterance rates. Confidence intervals are
percentile bootstraps over test items (Efron & Tibshirani 1993): items are resampled with replacement and
the corpus-level statistic recomputed, 1000 times with a fixed seed.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
from torch import Tensor


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance between two sequences (unit costs), computed by rapidfuzz in C (any hashable items:
    phones, words, characters)."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(list(ref), list(hyp)))


def error_counts(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Per item `(errors, reference length)`, shape `(N, 2)`."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return np.array([[edit_distance(r, h), len(r)] for r, h in zip(refs, hyps)], dtype=np.float64).reshape(-1, 2)


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Corpus-level error rate: total edits / total reference tokens (PER for phones, WER for words)."""
    c = error_counts(refs, hyps)
    return float(c[:, 0].sum() / max(c[:, 1].sum(), 1.0))


def per(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> float:
    """Phone error rate over phone lists."""
    return error_rate(refs, hyps)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over whitespace-separated transcripts."""
    return error_rate([r.split() for r in refs], [h.split() for h in hyps])


def accuracy(labels: Sequence[Hashable], preds: Sequence[Hashable]) -> float:
    return float(np.mean([a == b for a, b in zip(labels, preds)])) if len(labels) else 0.0


def ratio_of_sums(stats: np.ndarray) -> float:
    """`(N, 2)` per-item (numerator, denominator) -> sum / sum (accuracy: (correct, 1); error: (edits, len))."""
    return float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1e-12))


def bootstrap_ci(stats: np.ndarray, *, n: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of `ratio_of_sums` over items (rows of `stats (N, 2)`)."""
    stats = np.asarray(stats, dtype=np.float64).reshape(len(stats), -1)
    if stats.shape[1] == 1:
        stats = np.concatenate([stats, np.ones_like(stats)], axis=1)
    if len(stats) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(stats), size=(n, len(stats)))  # (n, N)
    num, den = stats[idx, 0].sum(1), np.maximum(stats[idx, 1].sum(1), 1e-12)  # (n,)
    lo, hi = np.quantile(num / den, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def ctc_greedy(logits: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """`(B, T, C)` CTC logits -> best-path label sequences (repeats merged, blanks dropped)."""
    best = logits.argmax(-1).cpu().numpy()  # (B, T)
    out = []
    for b, n in enumerate(lengths.tolist()):
        path = best[b, : int(n)]
        keep = np.ones(len(path), dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([int(x) for x in path[keep] if x != blank])
    return out


__all__ = [
    "accuracy",
    "bootstrap_ci",
    "ctc_greedy",
    "edit_distance",
    "error_counts",
    "error_rate",
    "per",
    "ratio_of_sums",
    "wer",
]
