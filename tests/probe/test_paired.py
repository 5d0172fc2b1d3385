"""Paired comparisons: the paired bootstrap finds a planted difference, covers 0 on identical scores, pairs
seeds, and a test set under 30 items is flagged in the probe's result and its text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec2vec.probe.metrics import bootstrap_ci
from codec2vec.probe.paired import MIN_ITEMS, format_delta, paired_delta
from conftest import abx_corpus, synthetic_task


def _items(errors: np.ndarray, lengths: np.ndarray) -> dict[str, list[float]]:
    return {f"u{i:03d}": [float(e), float(n)] for i, (e, n) in enumerate(zip(errors, lengths))}


def test_paired_bootstrap_finds_a_planted_difference() -> None:
    """B makes one more edit than A on a third of 60 utterances: A's PER is lower beyond the interval, although
    the two models' separate (unpaired) intervals overlap because items vary far more than the models do."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 40, size=60)
    a = rng.binomial(lengths, rng.uniform(0.05, 0.6, size=60))  # hard and easy items
    b = a + (np.arange(60) % 3 == 0)
    ia, ib = bootstrap_ci(np.c_[a, lengths]), bootstrap_ci(np.c_[b, lengths])
    assert ia[1] > ib[0]  # unpaired intervals overlap: they could not tell the two apart
    d = paired_delta(_items(a, lengths), _items(b, lengths), lower_is_better=True, names=("codec", "mel"))
    assert d["delta"] < 0 and d["ci"][1] < 0 and d["verdict"] == "codec better"
    assert d["n_items"] == 60 and "warning" not in d
    flipped = paired_delta(_items(b, lengths), _items(a, lengths), lower_is_better=True, names=("mel", "codec"))
    assert flipped["ci"][0] > 0 and flipped["verdict"] == "codec better"
    acc = paired_delta(_items(a, lengths), _items(b, lengths), lower_is_better=False, names=("x", "y"))
    assert acc["verdict"] == "y better"  # the same numbers read as accuracy: higher is better


def test_paired_bootstrap_covers_zero_for_identical_scores() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 40, size=50)
    a = _items(rng.binomial(lengths, 0.3), lengths)
    d = paired_delta(a, dict(a), lower_is_better=True)
    assert d["delta"] == 0.0 and d["ci"][0] <= 0.0 <= d["ci"][1] and d["verdict"] == "no difference"
    assert "no difference" in format_delta(d)


def test_paired_bootstrap_over_seeds_and_shared_items_only() -> None:
    """Seeds: the figure is the mean over seeds; a seed-to-seed spread as large as the gap widens the interval
    to cover 0, and items one model lacks are left out."""
    rng = np.random.default_rng(2)
    n = 80
    ones = np.ones(n)
    base = rng.binomial(1, 0.5, size=n).astype(float)
    a = [_items(np.where(rng.random(n) < p, 1.0, base), ones) for p in (0.0, 0.3, 0.6)]  # seeds far apart
    b = [_items(np.where(rng.random(n) < 0.3, 1.0, base), ones) for _ in range(3)]
    d = paired_delta(a, b, lower_is_better=True)
    mean_a = np.mean([np.mean([v[0] for v in s.values()]) for s in a])
    mean_b = np.mean([np.mean([v[0] for v in s.values()]) for s in b])
    assert d["n_seeds"] == 3 and abs(d["delta"] - (mean_a - mean_b)) < 1e-12
    assert d["ci"][0] <= 0.0 <= d["ci"][1]
    b_short = [dict(list(s.items())[:20]) for s in b]
    short = paired_delta(a, b_short, lower_is_better=True)
    assert short["n_items"] == 20 and str(MIN_ITEMS) in short["warning"]


def test_fewer_than_30_test_items_warn_in_result_and_text(tmp_path: Path) -> None:
    from codec2vec.probe.command import format_result
    from codec2vec.probe.runner import probe_features

    fd, rows = synthetic_task(tmp_path / "sid", "sid", (60, 20, 20))
    r = probe_features("sid", fdir=fd, rows=rows, max_epochs=3)
    assert r["n_test"] == 20 and len(r["warnings"]) == 1 and "20 test items" in r["warnings"][0]
    assert "warning: only 20 test items" in format_result(r)
    assert set(r["test_items"]) == {row["id"] for row in rows["test"]}
    big_fd, big_rows = synthetic_task(tmp_path / "pr", "pr", (40, 10, 40))
    big = probe_features("pr", fdir=big_fd, rows=big_rows, max_epochs=2)
    assert big["warnings"] == []
    # per-item stats belong to their utterance: the denominator is that utterance's reference length
    assert all(big["test_items"][row["id"]][1] == len(row["phones"]) for row in big_rows["test"])
    stats = np.array(list(big["test_items"].values()))
    assert abs(stats[:, 0].sum() / stats[:, 1].sum() - big["value"]) < 1e-12


def test_abx_speaker_errors_are_the_units_of_the_reported_error(tmp_path: Path) -> None:
    """The per-speaker, per-phone-pair ABX errors (the units a paired ABX comparison resamples): one entry per A/B
    speaker, and the paired statistic on the full sample is the reported error exactly, also when a speaker lacks
    some phone pairs (the reference's mean over speakers, then over pairs)."""
    from codec2vec.corpora.items import read_items
    from codec2vec.probe.abx import score_layer
    from codec2vec.probe.paired import resampled_stat, stack_items

    for informative in (8.0, 0.0):
        root = tmp_path / str(informative)
        rows = abx_corpus(root, seed=3, informative=informative, speakers=4)
        r = score_layer(read_items(root / "test.item"), lambda u, root=root: np.load(root / f"{u}.npy"))
        for side in ("within", "across"):
            per_speaker = r["speakers"][side]
            assert sorted(per_speaker) == sorted({row["speaker"] for row in rows})
            x, _, ids = stack_items(per_speaker, per_speaker)
            full = resampled_stat(x, np.zeros((1, 1), dtype=np.int64), np.arange(len(ids))[None, :])[0]
            assert abs(full - r[side]) < 1e-9, (full, r[side])
    # a speaker without some pair: the mean over speakers per pair, then over pairs (not a mean of speaker means)
    a = {"s1": {"p q": 0.0, "p r": 0.0}, "s2": {"p q": 1.0}}
    b = {"s1": {"p q": 0.0, "p r": 0.0}, "s2": {"p q": 0.0}}
    d = paired_delta(a, b, lower_is_better=True, min_items=0)
    assert abs(d["delta"] - 0.25) < 1e-12  # A: mean(0.5, 0.0) = 0.25; B: 0


def test_probe_text_reports_each_reference_s_paired_delta() -> None:
    """`probe` text: one paired line per reference (per side for ABX), with the verdict."""
    from codec2vec.probe.command import format_result

    a = _items(np.array([1.0] * 40), np.ones(40))
    b = _items(np.array([0.0] * 40), np.ones(40))
    d = paired_delta(b, a, lower_is_better=False, names=("pretrained", "random"))
    r = {"task": "sid", "metric": "accuracy", "value": 0.0, "ci": [0.0, 0.0], "n_test": 40, "warnings": [],
         "references": [{"model": "random", "value": 1.0, "ci": [1.0, 1.0], "paired": d}]}  # fmt: skip
    text = format_result(r)
    assert "paired: pretrained - random: -100.00 [-100.00, -100.00] (random better)" in text
    spk = {f"s{i}": [0.1 * (i % 3), 1.0] for i in range(8)}
    abx = {"task": "abx", "metric": "abx_error", "n_test": 40, "across": 0.1, "within": 0.1, "ci_across": [0, 1],
           "ci_within": [0, 1], "layer": 2, "references": [{"model": "codec", "across": 0.1, "within": 0.1,
           "ci_across": [0, 1], "ci_within": [0, 1], "layer": 0, "paired": {
               side: paired_delta(spk, spk, lower_is_better=True, min_items=0) for side in ("across", "within")}}]}  # fmt: skip
    text = format_result(abx)
    assert "paired across:" in text and "paired within:" in text and "no difference" in text
    assert "over speakers" in text and "warning" not in text
