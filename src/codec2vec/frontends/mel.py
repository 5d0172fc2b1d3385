"""The `mel` baseline front end (a simple log-mel input; MelHuBERT's own recipe is `melhubert`, fbank.py) and the
spectral features of the baselines.

audio `(B, S)` -> 80-bin log-mel (25 ms Hann window, 10 ms hop) -> per-utterance mean/variance normalisation over
the valid frames -> two frames stacked (160 dims at 50 frames/s) -> Linear(160, D) -> `(B, T, D)`. `log_mel` and
`mfcc` (HuBERT's 13 MFCC + deltas + delta-deltas) are also the k-means round-1 features of the baselines
(kmeans `--source mfcc`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.frontends.grid import HOP, SAMPLE_RATE, half_frame_mask, masked_audio

MEL_WIN, MEL_HOP = 400, 160  # 25 ms window, 10 ms hop at 16 kHz


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """HTK-scale triangular filters `(n_freqs, n_mels)` from 0 Hz to Nyquist (as torchaudio's `melscale_fbanks`)."""

    def hz_to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # (F,)
    m = torch.linspace(0.0, float(hz_to_mel(torch.tensor(sample_rate / 2.0))), n_mels + 2, dtype=torch.float64)
    pts = 700.0 * (10 ** (m / 2595.0) - 1.0)  # (n_mels + 2,) Hz
    slopes = pts[None, :] - freqs[:, None]  # (F, n_mels + 2)
    diff = pts[1:] - pts[:-1]  # (n_mels + 1,)
    down = -slopes[:, :-2] / diff[:-1]  # (F, n_mels)
    up = slopes[:, 2:] / diff[1:]  # (F, n_mels)
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


_FILTERS: dict[tuple[int, str, str], Tensor] = {}


def _cached(kind: str, n: int, device: torch.device) -> Tensor:
    key = (n, kind, str(device))
    if key not in _FILTERS:
        t = mel_filterbank(MEL_WIN // 2 + 1, n) if kind == "mel" else torch.hann_window(MEL_WIN, periodic=True)
        _FILTERS[key] = t.to(device)
    return _FILTERS[key]


def log_mel(wav: Tensor, n_mels: int = 80) -> Tensor:
    """wav `(B, S)` -> log-mel `(B, F, n_mels)`, F = floor((S - 400) / 160) + 1 frames (no centring)."""
    if wav.shape[-1] < MEL_WIN:
        return wav.new_zeros(wav.shape[0], 0, n_mels)
    window = _cached("win", MEL_WIN, wav.device)
    spec = torch.stft(wav.float(), MEL_WIN, MEL_HOP, window=window, center=False, return_complex=True)  # (B, 201, F)
    power = spec.real**2 + spec.imag**2  # (B, 201, F)
    mel = power.transpose(1, 2) @ _cached("mel", n_mels, wav.device)  # (B, F, n_mels)
    return torch.log(mel.clamp(min=1e-10))


def stack_pad(wav: Tensor, frames: int) -> Tensor:
    """Zero-pad or cut `(B, S)` audio so that `log_mel` gives exactly 2 x `frames` frames: 320 T + 240 samples."""
    want = frames * HOP + (MEL_WIN - MEL_HOP)
    return F.pad(wav, (0, want - wav.shape[-1])) if wav.shape[-1] < want else wav[..., :want]


def _deltas(x: Tensor, width: int = 2) -> Tensor:
    """Regression deltas over time of `(F, C)` (Kaldi / torchaudio `compute_deltas`, window 2*width+1)."""
    pad = F.pad(x.t()[None], (width, width), mode="replicate")[0].t()  # (F + 2w, C)
    n = x.shape[0]
    num = torch.zeros_like(x)
    for i in range(1, width + 1):
        num += i * (pad[width + i : width + i + n] - pad[width - i : width - i + n])
    return num / (2 * sum(i * i for i in range(1, width + 1)))


def mfcc(wav: Tensor, frames: int, n_mfcc: int = 13, n_mels: int = 23) -> Tensor:
    """HuBERT's round-1 features for one utterance: `(S,)` 16 kHz audio -> `(frames, 78)` on the 50 Hz grid.

    13 MFCC (DCT-II of a 23-bin log-mel, 25 ms / 10 ms, Kaldi's defaults) with deltas and delta-deltas (39 dims
    at 100 Hz, as HuBERT's `dump_mfcc_feature.py`); two 10 ms frames are stacked per 20 ms frame."""
    if frames <= 0:
        return wav.new_zeros(0, 6 * n_mfcc)
    m = log_mel(stack_pad(wav[None].float(), frames), n_mels)[0]  # (2T, n_mels)
    k = torch.arange(n_mels, dtype=torch.float32)
    dct = torch.cos(math.pi / n_mels * (k[:, None] + 0.5) * torch.arange(n_mfcc)[None, :])  # (n_mels, n_mfcc)
    dct = dct * math.sqrt(2.0 / n_mels)
    dct[:, 0] /= math.sqrt(2.0)
    c = m @ dct  # (2T, 13)
    d = _deltas(c)
    feats = torch.cat([c, d, _deltas(d)], dim=-1)  # (2T, 39)
    return feats.reshape(frames, 2 * feats.shape[-1])  # (T, 78)


class MelFrontend(nn.Module):
    """80-bin HTK log-mel, utterance-normalised, two frames stacked -> projection to `(B, T, D)` (not MelHuBERT's
    recipe, which is `MelHuBERTFrontend`: 40-dim Kaldi fbank, corpus-normalised)."""

    num_codebooks = 0
    codebook_size = 0

    def __init__(self, *, dim: int, n_mels: int = 80) -> None:
        super().__init__()
        self.n_mels = int(n_mels)
        self.proj = nn.Linear(2 * self.n_mels, dim)

    def forward(self, wav: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        """wav `(B, S)` float (zero beyond each row's samples), lengths `(B,)` frames -> `(B, T, D)`."""
        wav, lengths, t = masked_audio(wav, lengths)
        b = wav.shape[0]
        if t == 0:
            return wav.new_zeros(b, 0, self.proj.out_features)
        m = log_mel(stack_pad(wav, t), self.n_mels)  # (B, 2T, M)
        valid = half_frame_mask(lengths, t, m.dtype)  # (B, 2T, 1)
        n = valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
        mean = (m * valid).sum(1, keepdim=True) / n  # (B, 1, M)
        std = ((((m - mean) * valid) ** 2).sum(1, keepdim=True) / n + 1e-5).sqrt()  # (B, 1, M)
        m = ((m - mean) / std * valid).reshape(b, t, 2 * self.n_mels)  # (B, T, 2M)
        return self.proj(m.to(self.proj.weight.dtype))  # (B, T, D)
