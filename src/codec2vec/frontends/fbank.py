"""The `melhubert` baseline front end (MelHuBERT, Lin et al. 2023) and its Kaldi-compatible log-mel fbank.

`kaldi_fbank`: Kaldi's `compute-fbank-feats` (torchaudio's `compliance.kaldi.fbank`) with MelHuBERT's settings:
25 ms frames every 10 ms (`snip_edges`: F = 1 + (S - 400) // 160), per frame the DC removed, pre-emphasis 0.97
(the first sample against itself), a Hamming window (MelHuBERT's `window_type`; Kaldi's default is povey),
a 512-point FFT, the power spectrum, 40 triangular filters equally spaced on Kaldi's mel scale
(1127 ln(1 + f / 700)) from 20 Hz to Nyquist, and the log floored at float32 epsilon. Dither is off, so a
waveform always gives the same features.

`MelHuBERTFrontend`: audio `(B, S)` -> 40-dim fbank at 100 Hz -> normalised by the CORPUS mean and standard
deviation per bin (buffers fitted once over the training store's audio at the start of a run,
`fit_statistics`, and saved with every checkpoint) -> two frames stacked (80 dims at 50 frames/s, the shared
grid) -> Linear(80, D) -> `(B, T, D)`. `fbank_frames` gives the same stacked, unnormalised features per
utterance for k-means (`kmeans --source fbank`, MelHuBERT's round-1 targets).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from codec2vec.frontends.grid import SAMPLE_RATE, half_frame_mask, masked_audio
from codec2vec.frontends.mel import MEL_HOP, MEL_WIN, stack_pad

N_FFT = 512  # 400 samples rounded up to a power of two (Kaldi's round_to_power_of_two)
FBANK_BINS = 40
EPS = float(torch.finfo(torch.float32).eps)  # Kaldi's log floor
STATS_UTTERANCES = 1000  # at most this many training utterances (evenly spaced) give the corpus statistics


def kaldi_mel_banks(n_mels: int = FBANK_BINS, low: float = 20.0, high: float = SAMPLE_RATE / 2) -> Tensor:
    """Kaldi's triangular filters on its mel scale `(N_FFT // 2 + 1, n_mels)` (the Nyquist bin weighs 0)."""

    def mel(f: Tensor | float) -> Tensor:
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (n_mels + 1)
    i = torch.arange(n_mels, dtype=torch.float64)
    left, centre, right = lo + i * delta, lo + (i + 1) * delta, lo + (i + 2) * delta  # (n_mels,)
    freqs = mel(torch.arange(N_FFT // 2, dtype=torch.float64) * SAMPLE_RATE / N_FFT)[:, None]  # (256, 1)
    up = (freqs - left) / (centre - left)
    down = (right - freqs) / (right - centre)
    w = torch.clamp(torch.minimum(up, down), min=0.0)  # (256, n_mels)
    return torch.cat([w, w.new_zeros(1, n_mels)]).float()  # (257, n_mels)


_BANKS: dict[str, Tensor] = {}


def _banks(device: torch.device) -> tuple[Tensor, Tensor]:
    key = str(device)
    if key not in _BANKS:
        _BANKS[key] = kaldi_mel_banks().to(device)
        _BANKS[key + "/win"] = torch.hamming_window(MEL_WIN, periodic=False, dtype=torch.float32).to(device)
    return _BANKS[key], _BANKS[key + "/win"]


def kaldi_fbank(wav: Tensor) -> Tensor:
    """wav `(B, S)` float (any scale; MelHuBERT reads [-1, 1]) -> log-mel fbank `(B, F, 40)`,
    F = 1 + (S - 400) // 160 (0 when S < 400)."""
    if wav.shape[-1] < MEL_WIN:
        return wav.new_zeros(wav.shape[0], 0, FBANK_BINS)
    banks, window = _banks(wav.device)
    x = wav.float().unfold(-1, MEL_WIN, MEL_HOP)  # (B, F, 400)
    x = x - x.mean(-1, keepdim=True)  # remove DC
    x = torch.cat([x[..., :1] * (1.0 - 0.97), x[..., 1:] - 0.97 * x[..., :-1]], dim=-1)  # pre-emphasis
    spec = torch.fft.rfft(x * window, n=N_FFT)  # (B, F, 257)
    power = spec.real**2 + spec.imag**2
    return torch.log((power @ banks).clamp(min=EPS))  # (B, F, 40)


def fbank_frames(wav: Tensor, frames: int) -> Tensor:
    """One utterance `(S,)` at 16 kHz -> `(frames, 80)`: two 10 ms fbank frames stacked per 20 ms grid frame."""
    if frames <= 0:
        return wav.new_zeros(0, 2 * FBANK_BINS)
    return kaldi_fbank(stack_pad(wav[None].float(), frames))[0].reshape(frames, 2 * FBANK_BINS)


class MelHuBERTFrontend(nn.Module):
    """MelHuBERT's input: 40-dim Kaldi fbank, corpus-normalised, two frames stacked -> projection `(B, T, D)`."""

    num_codebooks = 0
    codebook_size = 0
    mean: Tensor  # (40,) corpus mean per bin
    std: Tensor  # (40,) corpus standard deviation per bin
    fitted: Tensor  # () bool

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * FBANK_BINS, dim)
        self.register_buffer("mean", torch.zeros(FBANK_BINS))
        self.register_buffer("std", torch.ones(FBANK_BINS))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_statistics(self, utterances: Iterable[Tensor]) -> None:
        """Corpus mean and standard deviation per bin over every fbank frame of `utterances` (each `(S,)`)."""
        n, s1, s2 = 0, torch.zeros(FBANK_BINS, dtype=torch.float64), torch.zeros(FBANK_BINS, dtype=torch.float64)
        for wav in utterances:
            f = kaldi_fbank(wav.float()[None])[0].double()  # (F, 40)
            n, s1, s2 = n + len(f), s1 + f.sum(0), s2 + (f * f).sum(0)
        if n == 0:
            return
        mean = s1 / n
        std = torch.sqrt(torch.clamp(s2 / n - mean * mean, min=0.0) + 1e-5)
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.fitted.fill_(True)

    def forward(self, wav: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        """wav `(B, S)` float (zero beyond each row's samples), lengths `(B,)` frames -> `(B, T, D)`."""
        wav, lengths, t = masked_audio(wav, lengths)
        if t == 0:
            return wav.new_zeros(wav.shape[0], 0, self.proj.out_features)
        f = kaldi_fbank(stack_pad(wav, t))  # (B, 2T, 40)
        valid = half_frame_mask(lengths, t, f.dtype)  # (B, 2T, 1)
        f = ((f - self.mean) / self.std * valid).reshape(wav.shape[0], t, 2 * FBANK_BINS)  # (B, T, 80)
        return self.proj(f.to(self.proj.weight.dtype))  # (B, T, D)


def utterance_audio(source: object, ids: list[str], frames: dict[str, int]) -> Iterable[Tensor]:
    """Audio `(S,)` of at most `STATS_UTTERANCES` of `ids` (evenly spaced), read by an `AudioSource`."""
    step = max(1, math.ceil(len(ids) / STATS_UTTERANCES))
    for uid in ids[::step]:
        yield torch.from_numpy(source.read(uid, 0, frames[uid]))  # type: ignore[attr-defined]


__all__ = ["FBANK_BINS", "MelHuBERTFrontend", "fbank_frames", "kaldi_fbank", "kaldi_mel_banks", "utterance_audio"]
