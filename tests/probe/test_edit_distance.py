"""PER/WER's edit distance comes from rapidfuzz (C) and equals the textbook dynamic programme it replaced."""

from __future__ import annotations

import random
from typing import Hashable, Sequence

import pytest

from codec2vec.probe.metrics import edit_distance, error_rate


def _reference(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """The pure-Python Levenshtein distance the probes used before (unit costs)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def test_equals_the_pure_python_result_on_random_pairs() -> None:
    rng = random.Random(0)
    phones = ["AA", "AE", "B", "CH", "D", "sil", "EY", "ZH"]
    for _ in range(400):
        vocab = rng.choice([phones, list("abc"), [0, 1, 2, 3, 4, 5]])
        ref = [rng.choice(vocab) for _ in range(rng.randrange(0, 40))]
        hyp = [rng.choice(vocab) for _ in range(rng.randrange(0, 40))]
        assert edit_distance(ref, hyp) == _reference(ref, hyp), (ref, hyp)
    assert edit_distance("kitten", "sitting") == 3 and edit_distance(("a", "b"), []) == 2


def test_it_is_rapidfuzz_doing_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidfuzz.distance import Levenshtein

    calls = []
    real = Levenshtein.distance
    monkeypatch.setattr(Levenshtein, "distance", lambda a, b, **kw: calls.append(1) or real(a, b, **kw))
    assert error_rate([["a", "b", "c"]], [["a", "c"]]) == pytest.approx(1 / 3)
    assert calls == [1]
