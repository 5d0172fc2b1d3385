"""Span masking for masked prediction, as pure functions seeded per utterance.

Follows HuBERT's `compute_mask_indices` (Hsu et al. 2021; fairseq `data_utils.compute_mask_indices`): in a row
of `L` valid frames, `n = max(min_spans, floor(prob * L + u))` span starts (u ~ U[0, 1)) are drawn without
replacement from the positions where a whole span fits, and each start masks `span` frames (spans may overlap).
With `prob=0.08, span=10` about 1 - 0.92**10 ~ 57% of the frames are masked. `prob` is fairseq's `mask_prob`
divided by `mask_length` (HuBERT's 0.8 and 10 are `prob=0.08, span=10` here); values whose expected masked
fraction `1 - (1 - prob)**span` exceeds `MAX_MASKED_FRACTION` are refused (fairseq's 0.8 copied as is would
mask 99.9999% of the frames, leaving nothing to predict from).

Unlike fairseq, a row's mask depends only on its own length and seed (a `torch.Generator` per row), never on the
rest of the batch: the same utterance gets the same mask alone, padded in a batch, or on another DDP rank.

Shapes: `lengths (B,)` frames, `seeds (B,)` int64 -> mask `BoolTensor (B, T)`, True = masked; padding
(`t >= lengths[b]`) is never masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from codec2vec.common.errors import ConfigError

_U64 = 0xFFFF_FFFF_FFFF_FFFF
MAX_MASKED_FRACTION = 0.95  # refuse settings that leave (in expectation) under 5% of the frames visible


def expected_masked_fraction(prob: float, span: int) -> float:
    """Expected share of masked frames in a long row: each frame is covered unless none of the `span` starts
    that would cover it is drawn, `1 - (1 - prob)**span` (overlapping spans; fairseq's no_overlap=False)."""
    return 1.0 - (1.0 - prob) ** max(1, int(span))


@dataclass
class MaskingConfig:
    """HuBERT span masking: `prob` = chance that a frame starts a span (HuBERT's mask_prob / mask_length)."""

    prob: float = 0.08
    span: int = 10
    min_spans: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"masking.prob: must be in [0, 1], got {self.prob}")
        frac = expected_masked_fraction(self.prob, self.span)
        if frac > MAX_MASKED_FRACTION:
            raise ConfigError(
                f"masking.prob={self.prob} with masking.span={self.span} masks about {100 * frac:.2f}% of the frames "
                f"(1 - (1 - prob)^span > {MAX_MASKED_FRACTION}): masking.prob is the chance that a frame STARTS a "
                f"span, fairseq's mask_prob / mask_length (HuBERT's mask_prob=0.8, mask_length=10 is "
                f"masking.prob={0.8 / max(1, self.span):g} with span {self.span}: prob = mask_prob / span)"
            )


def row_generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one utterance; `stream` separates independent uses of the same seed."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 2654435761 + stream * 0x9E3779B97F4A7C15) & _U64)
    return g


def row_span_mask(length: int, cfg: MaskingConfig, generator: torch.Generator) -> Tensor:
    """Mask `(length,)` bool for one utterance, drawn from `generator`."""
    mask = torch.zeros(length, dtype=torch.bool)
    if length <= 0 or cfg.prob <= 0 and cfg.min_spans <= 0:
        return mask
    span = max(1, min(int(cfg.span), length))
    u = float(torch.rand((), generator=generator))
    num = max(int(cfg.min_spans), int(cfg.prob * length + u))
    num_starts = length - span + 1  # every start where a whole span fits
    num = min(num, num_starts)
    if num <= 0:
        return mask
    starts = torch.randperm(num_starts, generator=generator)[:num]  # (n,)
    idx = (starts[:, None] + torch.arange(span)[None, :]).reshape(-1)  # (n * span,)
    mask[idx] = True
    return mask


def span_mask(lengths: Tensor, max_len: int, cfg: MaskingConfig, seeds: Tensor) -> Tensor:
    """`(B,)` lengths, `(B,)` int64 seeds -> `(B, max_len)` bool mask (True = masked), on `lengths.device`."""
    if lengths.shape != seeds.shape:
        raise ValueError(f"lengths {tuple(lengths.shape)} and seeds {tuple(seeds.shape)} must both be (B,)")
    out = torch.zeros(len(lengths), max_len, dtype=torch.bool)  # (B, T)
    for b, (n, s) in enumerate(zip(lengths.tolist(), seeds.tolist())):
        n = min(int(n), max_len)
        out[b, :n] = row_span_mask(n, cfg, row_generator(s, stream=0))
    return out.to(lengths.device)


def quantizer_keep_levels(seeds: Tensor, num_levels: int, prob: float, min_levels: int = 1) -> Tensor:
    """Quantizer dropout (as in DAC/SoundStream training): per utterance, with probability `prob`, keep only the
    first `n ~ U{min_levels..K}` codebook levels; otherwise all K. `(B,)` seeds -> `(B,)` long, on seeds' device."""
    lo = max(1, min(int(min_levels), num_levels))
    out = torch.full((len(seeds),), num_levels, dtype=torch.long)
    for b, s in enumerate(seeds.tolist()):
        g = row_generator(s, stream=1)
        drop, n = torch.rand((), generator=g), torch.randint(lo, num_levels + 1, (), generator=g)
        if float(drop) < prob:
            out[b] = int(n)
    return out.to(seeds.device)


@dataclass(frozen=True)
class Masker:
    """Draws a batch's span mask and quantizer-dropout levels on the CPU from CPU lengths and seeds; picklable, so
    loader processes call it and the masks are pinned and copied to the GPU with the batch (never read back)."""

    masking: MaskingConfig
    num_levels: int = 0  # K of the codec front end (0: no quantizer dropout, e.g. the audio baselines)
    dropout: float = 0.0  # quantizer-dropout probability per utterance (at step 0 with the `decay` schedule)
    min_levels: int = 1
    schedule: str = "constant"  # constant | decay: the probability falls linearly to 0 at `total_steps`
    total_steps: int = 0

    @property
    def needs_step(self) -> bool:
        """Whether the levels depend on the optimizer step (a decaying schedule): then the training loop draws them
        with the step (`keep_levels`), and `__call__` without one leaves them to it."""
        return self.schedule == "decay" and self.dropout > 0 and self.num_levels > 0

    def rate(self, step: int) -> float:
        """Quantizer-dropout probability at optimizer `step` (0-based): constant, or `dropout * (1 - step/total)`."""
        if self.schedule != "decay":
            return self.dropout
        return self.dropout * max(0.0, 1.0 - int(step) / max(1, self.total_steps))

    def keep_levels(self, seeds: Tensor, step: int) -> Tensor | None:
        """`(B,)` CPU seeds -> levels kept `(B,)` at `step`: the same seed and step draw the same levels (a resumed
        run repeats them); each row's draw is fixed by its seed and dropped when it falls under `rate(step)`."""
        if self.dropout <= 0 or self.num_levels <= 0:
            return None
        return quantizer_keep_levels(seeds, self.num_levels, self.rate(step), self.min_levels)

    def __call__(
        self, lengths: Tensor, max_len: int, seeds: Tensor, step: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """`(B,)` lengths and seeds on the CPU -> mask `(B, max_len)` bool, keep levels `(B,)` long or None (also
        None when they depend on a `step` not given: loader processes do not know it, `Pretrainer.prepare` does)."""
        if lengths.device.type != "cpu" or seeds.device.type != "cpu":
            raise ValueError(
                f"masks are drawn from CPU lengths and seeds (got {lengths.device}, {seeds.device}): draw them "
                "before the batch is copied to the device (Pretrainer.prepare)"
            )
        mask = span_mask(lengths, max_len, self.masking, seeds)
        if self.needs_step and step is None:
            return mask, None
        return mask, self.keep_levels(seeds, 0 if step is None else step)


__all__ = [
    "MAX_MASKED_FRACTION",
    "Masker",
    "MaskingConfig",
    "expected_masked_fraction",
    "quantizer_keep_levels",
    "row_generator",
    "row_span_mask",
    "span_mask",
]
