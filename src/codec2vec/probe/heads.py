"""Light SUPERB heads on a frozen upstream, each behind a learned softmax-weighted sum of the layers.

s3prl's Featurizer: `h = sum_l softmax(w)_l * x_l` over all hidden states, `w` starting at zero (equal
weights); under `--protocol ours` each layer is first standardised by the train split's statistics
(`WeightedSum`), as s3prl's `layer_norm` option normalises each layer before the sum (`superb`: raw layers). Heads (s3prl downstream configs):
  - `CTCHead` (PR): Linear(D, 256) -> Linear(256, C + 1) per frame, CTC with blank 0;
  - `LSTMCTCHead` (ASR): Linear(D, 256) -> 2-layer BiLSTM (128 per direction: SUPERB's 1024 is far too slow
    for a CPU probe) -> Linear(256, C + 1) per frame, CTC with blank 0;
  - `PoolHead` (KS, SID, ER, style): Linear(D, 256), mean over valid frames, Linear(256, C);
  - `SlotHead` (IC): Linear(D, 256), mean over valid frames, one Linear(256, C_s) per slot.
Frame heads take `x (B, T, L, D)`, lengths `(B,)`. Utterance heads take the per-layer mean-pooled features
`(B, L, D)`: projection, weighted sum and mean pooling are all linear and commute, so pooling each layer
once ahead of training is exactly the SUPERB head and makes every epoch a few matrix products.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PROJ = 256  # s3prl's project_dim / hidden of the light heads


class WeightedSum(nn.Module):
    """`(..., L, D) -> (..., D)`: each layer standardised, then mixed with learned softmax weights (initially
    equal): `h = sum_l softmax(w)_l * (x_l - shift_l) / scale_l`. `shift (L, D)` and `scale (L,)` are fixed
    buffers (`set_norm`: the train split's per-layer mean and standard deviation, one number per layer), so no
    layer dominates the sum by its scale alone; a per-layer affine map keeps each layer's geometry and commutes
    with mean pooling (s3prl's Featurizer layer-normalises each frame instead, which does not)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.register_buffer("shift", torch.zeros(num_layers, 1))
        self.register_buffer("scale", torch.ones(num_layers))

    def set_norm(self, shift: Tensor, scale: Tensor) -> None:
        """`shift (L, D)`, `scale (L,)` (> 0)."""
        self.shift = shift.detach().float().clone()
        self.scale = scale.detach().float().clamp(min=1e-8).clone()

    def forward(self, x: Tensor) -> Tensor:
        w = torch.softmax(self.logits, 0) / self.scale  # (L,)
        return torch.einsum("...ld,l->...d", x - self.shift, w)

    def weights(self) -> list[float]:
        return [float(v) for v in torch.softmax(self.logits.detach(), 0)]


class CTCHead(nn.Module):
    """PR: weighted sum -> Linear(D, 256) -> Linear(256, C + 1); `(B, T, L, D) -> (B, T, C + 1)` logits."""

    def __init__(self, *, num_layers: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.mix = WeightedSum(num_layers)
        self.proj = nn.Linear(dim, PROJ)
        self.out = nn.Linear(PROJ, num_classes + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.out(self.proj(self.mix(x)))  # (B, T, C + 1)


class LSTMCTCHead(nn.Module):
    """ASR: weighted sum -> Linear(D, 256) -> 2-layer BiLSTM(hidden) -> Linear(2 hidden, C + 1)."""

    def __init__(self, *, num_layers: int, dim: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.mix = WeightedSum(num_layers)
        self.proj = nn.Linear(dim, PROJ)
        self.lstm = nn.LSTM(PROJ, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.2)
        self.out = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.proj(self.mix(x))  # (B, T, 256)
        packed = nn.utils.rnn.pack_padded_sequence(
            h, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=h.shape[1])  # (B, T, 2H)
        return self.out(y)  # (B, T, C + 1)


class PoolHead(nn.Module):
    """KS/SID/ER/style: pooled `(B, L, D)` -> weighted sum -> Linear(D, 256) -> Linear(256, C)."""

    def __init__(self, *, num_layers: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.mix = WeightedSum(num_layers)
        self.proj = nn.Linear(dim, PROJ)
        self.out = nn.Linear(PROJ, num_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.out(self.proj(self.mix(pooled)))  # (B, C)


class SlotHead(nn.Module):
    """IC: pooled `(B, L, D)` -> weighted sum -> Linear(D, 256) -> one Linear(256, C_s) per slot."""

    def __init__(self, *, num_layers: int, dim: int, num_classes: list[int]) -> None:
        super().__init__()
        self.mix = WeightedSum(num_layers)
        self.proj = nn.Linear(dim, PROJ)
        self.outs = nn.ModuleList(nn.Linear(PROJ, c) for c in num_classes)

    def forward(self, pooled: Tensor) -> list[Tensor]:
        h = self.proj(self.mix(pooled))  # (B, 256)
        return [out(h) for out in self.outs]  # one (B, C_s) per slot


__all__ = ["PROJ", "CTCHead", "LSTMCTCHead", "PoolHead", "SlotHead", "WeightedSum"]
