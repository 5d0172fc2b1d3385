"""Span masking (HuBERT rule, seeded per utterance) and quantizer-dropout levels."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec2vec.pretrain.masking import MaskingConfig, quantizer_keep_levels, span_mask


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=6), st.integers(0, 2**62), st.integers(0, 40))
def test_padding_never_masked_and_row_independent_of_batch(lengths: list[int], seed: int, extra: int) -> None:
    lens = torch.tensor(lengths)
    seeds = torch.arange(len(lengths)) * 7919 + seed
    t = max(lengths) + extra
    mask = span_mask(lens, t, MaskingConfig(), seeds)
    assert mask.shape == (len(lengths), t) and mask.dtype == torch.bool
    for b, n in enumerate(lengths):
        assert not mask[b, n:].any()
        alone = span_mask(lens[b : b + 1], n, MaskingConfig(), seeds[b : b + 1])
        assert torch.equal(alone[0], mask[b, :n])  # same mask alone, in a batch, with more padding


def test_fraction_follows_probability_and_span() -> None:
    cfg = MaskingConfig(prob=0.08, span=10, min_spans=2)
    n = 2000
    mask = span_mask(torch.full((64,), n), n, cfg, torch.arange(64))
    frac = mask.float().mean().item()
    assert abs(frac - (1 - (1 - 0.08) ** 10)) < 0.03  # HuBERT: ~57% masked
    for row in mask:
        assert min(_runs(row)) >= cfg.span  # spans are never cut shorter than `span` inside the row
    half = span_mask(torch.full((64,), n), n, MaskingConfig(prob=0.02, span=10), torch.arange(64))
    assert half.float().mean().item() < frac - 0.2


def test_min_spans_and_short_rows() -> None:
    cfg = MaskingConfig(prob=0.0, span=5, min_spans=2)
    mask = span_mask(torch.tensor([100] * 50), 100, cfg, torch.arange(50))
    counts = mask.sum(1)
    assert counts.min() >= 5 and counts.max() <= 10  # exactly 2 spans of 5 (possibly overlapping)
    tiny = span_mask(torch.tensor([0, 1, 3]), 4, MaskingConfig(span=10), torch.tensor([1, 2, 3]))
    assert tiny[0].sum() == 0 and tiny[1, 0] and tiny[2, :3].all() and not tiny[2, 3]


def test_seeded_and_varied() -> None:
    lens = torch.tensor([400, 400])
    a = span_mask(lens, 400, MaskingConfig(), torch.tensor([11, 12]))
    b = span_mask(lens, 400, MaskingConfig(), torch.tensor([11, 12]))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_quantizer_keep_levels() -> None:
    seeds = torch.arange(2000)
    assert torch.equal(quantizer_keep_levels(seeds, 12, 0.0), torch.full((2000,), 12))
    keep = quantizer_keep_levels(seeds, 12, 0.5, min_levels=3)
    assert keep.min() >= 3 and keep.max() <= 12
    assert abs((keep < 12).float().mean().item() - 0.5 * 9 / 10) < 0.05  # dropped rows, minus draws of n = K
    assert set(quantizer_keep_levels(seeds, 12, 1.0, min_levels=3).tolist()) == set(range(3, 13))
    assert torch.equal(keep, quantizer_keep_levels(seeds, 12, 0.5, min_levels=3))


def test_probabilities_that_mask_almost_everything_are_refused_with_the_fairseq_relation() -> None:
    from codec2vec.common.errors import ConfigError
    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.masking import expected_masked_fraction

    assert abs(expected_masked_fraction(0.08, 10) - (1 - 0.92**10)) < 1e-12
    with pytest.raises(ConfigError) as e:
        load_config(None, ["masking.prob=0.8"])  # fairseq's mask_prob copied as is
    msg = str(e.value)
    assert "masking.prob" in msg and "mask_prob" in msg and "prob = mask_prob / span" in msg and "0.08" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match="masking.prob"):
        MaskingConfig(prob=0.3, span=10)  # 97% masked
    assert MaskingConfig(prob=0.065, span=10).prob == 0.065  # wav2vec 2.0's 0.65 / 10 is fine
    assert MaskingConfig(prob=0.5, span=1).span == 1  # 50% with single-frame spans is fine
