"""The `waveform` baseline front end: HuBERT / wav2vec 2.0's `ConvFeatureExtractionModel` (fairseq `mode="default"`,
as torchaudio's `hubert_base`): audio `(B, S)` -> 7 Conv1d (512 channels, kernels 10,3,3,3,3,2,2, strides
5,2,2,2,2,2,2: hop 320, receptive field 400 samples, no bias) with GroupNorm(512, 512) after the first and GELU
after each -> LayerNorm(512) -> Linear(512, D) -> `(B, T, D)`, T = ceil(S / 320). The CNN's gradient is scaled by
0.1 (HuBERT's `feature_grad_mult`). Padding: each row is zero beyond its samples and its first-layer GroupNorm
statistics use only the positions that exist when the row is alone, so a padded batch gives each row exactly its
output alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.frontends.grid import HOP, num_frames

CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))  # (kernel, stride): hop 320, field 400
RECEPTIVE_EXTRA = 80  # receptive field (400) - hop (320): samples past the last frame's hop that it reads


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient times `scale` backward (fairseq's GradMultiply)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def _conv_len(n: Tensor, kernel: int, stride: int) -> Tensor:
    return torch.div(n - kernel, stride, rounding_mode="floor") + 1


def masked_channel_norm(x: Tensor, valid: Tensor, eps: float = 1e-5) -> Tensor:
    """GroupNorm(C, C) over time restricted to valid positions: x `(B, C, L)`, valid `(B, 1, L)` float."""
    n = valid.sum(-1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    mean = (x * valid).sum(-1, keepdim=True) / n  # (B, C, 1)
    var = (((x - mean) * valid) ** 2).sum(-1, keepdim=True) / n  # (B, C, 1)
    return (x - mean) * torch.rsqrt(var + eps)


class WaveformFrontend(nn.Module):
    """HuBERT's convolutional feature encoder -> LayerNorm -> projection: `(B, S)` audio -> `(B, T, D)`."""

    num_codebooks = 0
    codebook_size = 0

    def __init__(self, *, dim: int, conv_dim: int = 512, grad_scale: float = 0.1) -> None:
        super().__init__()
        chans = [1] + [conv_dim] * len(CONV_LAYERS)
        convs = [nn.Conv1d(chans[i], chans[i + 1], k, stride=s, bias=False) for i, (k, s) in enumerate(CONV_LAYERS)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight)  # fairseq's init for these convs
        self.convs = nn.ModuleList(convs)
        self.norm_weight = nn.Parameter(torch.ones(conv_dim))  # GroupNorm(512, 512)'s affine, after conv 1
        self.norm_bias = nn.Parameter(torch.zeros(conv_dim))
        self.layer_norm = nn.LayerNorm(conv_dim)
        self.proj = nn.Linear(conv_dim, dim)
        self.grad_scale = float(grad_scale)

    def cnn(self, wav: Tensor, lengths: Tensor) -> Tensor:
        """wav `(B, S)`, lengths `(B,)` frames -> `(B, T, 512)` CNN features, T = ceil(S / 320)."""
        b, s = wav.shape
        t = num_frames(s)
        wav = wav[:, : t * HOP]
        samples = torch.arange(wav.shape[1], device=wav.device)[None, :] < (lengths * HOP)[:, None]  # (B, S)
        x = F.pad(wav * samples, (0, t * HOP + RECEPTIVE_EXTRA - wav.shape[1]))[:, None, :]  # (B, 1, 320T + 80)
        own = lengths.to(wav.device) * HOP + RECEPTIVE_EXTRA  # (B,) samples each row has alone
        for i, conv in enumerate(self.convs):
            x = conv(x)  # (B, 512, L_i)
            if i == 0:
                n1 = _conv_len(own, *CONV_LAYERS[0])  # (B,) first-layer positions of the row alone
                valid = (torch.arange(x.shape[-1], device=x.device)[None, :] < n1[:, None]).to(x.dtype)
                x = masked_channel_norm(x, valid[:, None, :])
                x = x * self.norm_weight[None, :, None] + self.norm_bias[None, :, None]
            x = F.gelu(x)
        return x.transpose(1, 2)  # (B, T, 512)

    def forward(self, wav: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        """wav `(B, S)` float (zero beyond each row's samples), lengths `(B,)` frames -> `(B, T, D)`."""
        t = num_frames(wav.shape[-1])
        if lengths is None:
            lengths = torch.full((wav.shape[0],), t, dtype=torch.long, device=wav.device)
        if t == 0:  # the CNN cannot run on nothing
            return wav.new_zeros(wav.shape[0], 0, self.proj.out_features)
        x = self.cnn(wav, lengths)  # (B, T, 512)
        if self.training and self.grad_scale != 1.0:
            x = _GradScale.apply(x, self.grad_scale)
        return self.proj(self.layer_norm(x))  # (B, T, D)


# --- log-mel and MFCC -----------------------------------------------------------------------------
