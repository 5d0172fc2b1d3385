"""Front ends: what turns an input (codec tokens or audio) into the Transformer's `(B, T, D)` frame features.

All three put their frames on one grid, the codec grid of 16 kHz codecs: hop 320 samples (50 frames/s), and
T = ceil(samples / 320) frames, so masks, k-means labels and probe labels never need resampling.

- `codec` (Codec2Vec, Tseng & Harwath 2025): codes `(B, K, T)` -> sum_k E_k[codes[:, k]] (one fused
  `embedding_bag` over a `(K*V, D_codec)` table initialised from the codec's codebook vectors) -> LayerNorm ->
  Linear(D_codec, D). Quantizer dropout keeps the first `keep_levels[b]` levels of row b.
- `waveform` (HuBERT / wav2vec 2.0's `ConvFeatureExtractionModel`, fairseq `mode="default"`, as torchaudio's
  `hubert_base`): audio `(B, S)` -> 7 Conv1d (512 channels, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: hop
  320, receptive field 400 samples, no bias) with GroupNorm(512, 512) after the first and GELU after each ->
  LayerNorm(512) -> Linear(512, D). The CNN's gradient is scaled by 0.1 (HuBERT's `feature_grad_mult`).
  Padding: each row is zero beyond its samples and its first-layer GroupNorm statistics use only the
  positions that exist when the row is alone, so a padded batch gives each row exactly its output alone.
- `mel` (MelHuBERT, Lin et al. 2023): audio `(B, S)` -> 80-bin log-mel (25 ms Hann window, 10 ms hop) ->
  per-utterance mean/variance normalisation over the valid frames -> two frames stacked (160 dims at
  50 frames/s) -> Linear(160, D).

Every front end: `forward(inputs, lengths (B,) frames, keep_levels=None) -> (B, T, D)`; `num_codebooks` and
`codebook_size` are 0 for the audio front ends. `log_mel` and `mfcc` are also the k-means round-1 features of the
baselines (kmeans.py `--source mfcc`, HuBERT's 13 MFCC + deltas + delta-deltas).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
HOP = 320  # samples per frame of the shared grid (50 frames/s at 16 kHz)
CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))  # (kernel, stride): hop 320, field 400
RECEPTIVE_EXTRA = 80  # receptive field (400) - hop (320): samples past the last frame's hop that it reads
MEL_WIN, MEL_HOP = 400, 160  # 25 ms window, 10 ms hop at 16 kHz


def num_frames(samples: int | Tensor) -> Any:
    """Frames on the shared grid for `samples` samples: ceil(samples / 320)."""
    return -(-samples // HOP)


# --- the codec front end --------------------------------------------------------------------------


class CodecFrontend(nn.Module):
    """Summed per-codebook embeddings (codec-initialised) -> LayerNorm -> projection: `(B, K, T)` -> `(B, T, D)`."""

    level_offsets: Tensor

    def __init__(
        self,
        *,
        dim: int,
        num_codebooks: int,
        codebook_size: int,
        codebook_vectors: Tensor | None = None,
        codebook_dim: int | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        self.num_codebooks, self.codebook_size = int(num_codebooks), int(codebook_size)
        k, v = self.num_codebooks, self.codebook_size
        if codebook_vectors is not None:
            if codebook_vectors.ndim != 3 or tuple(codebook_vectors.shape[:2]) != (k, v):
                raise ValueError(f"codebook_vectors must be (K={k}, V={v}, D), got {tuple(codebook_vectors.shape)}")
            codebook_dim = int(codebook_vectors.shape[-1])
        dc = int(codebook_dim or dim)
        self.codebook_dim = dc
        # One (K*V, D_codec) table: level k's rows live at k*V .. k*V+V-1, so the K lookups are one embedding_bag.
        self.table = nn.Parameter(torch.empty(k * v, dc), requires_grad=not freeze)
        if codebook_vectors is not None:
            with torch.no_grad():
                self.table.copy_(codebook_vectors.reshape(k * v, dc).float())
        else:
            nn.init.normal_(self.table, std=1.0 / math.sqrt(max(k, 1)))
        self.register_buffer("level_offsets", torch.arange(k) * v, persistent=False)  # (K,)
        self.embed_norm = nn.LayerNorm(dc)
        self.proj = nn.Linear(dc, dim)

    def embed(self, codes: Tensor, keep_levels: Tensor | None = None) -> Tensor:
        """codes `(B, K, T)` -> summed table rows `(B, T, D_codec)`, before LayerNorm/projection.
        `keep_levels (B,)`: use only the first `keep_levels[b]` levels of row b (quantizer dropout)."""
        b, k, t = codes.shape
        if k != self.num_codebooks:
            raise ValueError(f"codes have K={k} codebooks; the model was built for K={self.num_codebooks}")
        idx = (codes.long() + self.level_offsets[None, :, None]).transpose(1, 2).reshape(b * t, k)  # (B*T, K)
        weights = None
        if keep_levels is not None:
            keep = torch.arange(k, device=codes.device)[None, :] < keep_levels[:, None]  # (B, K)
            weights = keep[:, None, :].expand(b, t, k).reshape(b * t, k).to(self.table.dtype)  # (B*T, K)
        e = F.embedding_bag(idx, self.table, mode="sum", per_sample_weights=weights)  # (B*T, D_codec)
        return e.view(b, t, self.codebook_dim)

    def forward(self, codes: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        return self.proj(self.embed_norm(self.embed(codes, keep_levels)))  # (B, T, D)


# --- the waveform front end (HuBERT's CNN) --------------------------------------------------------


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
    """MelHuBERT's input: 80-bin log-mel, utterance-normalised, two frames stacked -> projection to `(B, T, D)`."""

    num_codebooks = 0
    codebook_size = 0

    def __init__(self, *, dim: int, n_mels: int = 80) -> None:
        super().__init__()
        self.n_mels = int(n_mels)
        self.proj = nn.Linear(2 * self.n_mels, dim)

    def forward(self, wav: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        """wav `(B, S)` float (zero beyond each row's samples), lengths `(B,)` frames -> `(B, T, D)`."""
        b, t = wav.shape[0], num_frames(wav.shape[-1])
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=wav.device)
        if t == 0:
            return wav.new_zeros(b, 0, self.proj.out_features)
        samples = torch.arange(wav.shape[1], device=wav.device)[None, :] < (lengths * HOP)[:, None]  # (B, S)
        m = log_mel(stack_pad(wav * samples, t), self.n_mels)  # (B, 2T, M)
        valid = (torch.arange(2 * t, device=wav.device)[None, :] < 2 * lengths[:, None]).to(m.dtype)[..., None]
        n = valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
        mean = (m * valid).sum(1, keepdim=True) / n  # (B, 1, M)
        std = ((((m - mean) * valid) ** 2).sum(1, keepdim=True) / n + 1e-5).sqrt()  # (B, 1, M)
        m = ((m - mean) / std * valid).reshape(b, t, 2 * self.n_mels)  # (B, T, 2M)
        return self.proj(m.to(self.proj.weight.dtype))  # (B, T, D)


FRONTENDS = ("codec", "waveform", "mel")


def build_frontend(
    name: str,
    *,
    dim: int,
    num_codebooks: int = 0,
    codebook_size: int = 0,
    codebook_vectors: Tensor | None = None,
    codebook_dim: int | None = None,
    freeze: bool = False,
) -> nn.Module:
    """The front end `name` (codec | waveform | mel) for a model of width `dim`."""
    if name == "codec":
        return CodecFrontend(
            dim=dim,
            num_codebooks=num_codebooks,
            codebook_size=codebook_size,
            codebook_vectors=codebook_vectors,
            codebook_dim=codebook_dim,
            freeze=freeze,
        )
    builders = {"waveform": WaveformFrontend, "mel": MelFrontend}
    if name not in builders:
        raise ValueError(f"unknown front end {name!r}; choose one of {', '.join(FRONTENDS)}")
    return builders[name](dim=dim)


__all__ = [
    "FRONTENDS",
    "HOP",
    "CodecFrontend",
    "MelFrontend",
    "WaveformFrontend",
    "build_frontend",
    "log_mel",
    "mel_filterbank",
    "mfcc",
    "num_frames",
]
