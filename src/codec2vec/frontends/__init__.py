"""Front ends: what turns an input (codec tokens or audio) into the Transformer's `(B, T, D)` frame features.

All three put their frames on one grid (`grid.py`), the codec grid of 16 kHz codecs: hop 320 samples (50 frames/s),
and T = ceil(samples / 320) frames, so masks, k-means labels and probe labels never need resampling. One file per
front end (`codec.py`, `waveform.py`, `mel.py`); the baselines' data path (audio crops) is `pretrain/loaders.py`.

- `codec` (Codec2Vec, Tseng & Harwath 2025): codes `(B, K, T)` -> sum_k E_k[codes[:, k]] (one fused
  `embedding_bag` over a `(K*V, D_codec)` table initialised from the codec's codebook vectors) -> LayerNorm (or
  another `embed_norm`: `scale`, `none`) -> Linear(D_codec, D). Quantizer dropout keeps the first `keep_levels[b]`
  levels of row b.
- `waveform` (HuBERT / wav2vec 2.0's `ConvFeatureExtractionModel`, fairseq `mode="default"`, as torchaudio's
  `hubert_base`): audio `(B, S)` -> 7 Conv1d (512 channels, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: hop
  320, receptive field 400 samples, no bias) with GroupNorm(512, 512) after the first and GELU after each ->
  LayerNorm(512) -> Linear(512, D). The CNN's gradient is scaled by 0.1 (HuBERT's `feature_grad_mult`).
  Padding: each row is zero beyond its samples and its first-layer GroupNorm statistics use only the
  positions that exist when the row is alone, so a padded batch gives each row exactly its output alone.
- `melhubert` (MelHuBERT, Lin et al. 2023; `fbank.py`): audio `(B, S)` -> 40-dim Kaldi-compatible log-mel
  fbank (25 ms Hamming window, 10 ms shift) -> corpus mean/variance normalisation (statistics fitted once
  over the training audio, saved with the checkpoint) -> two frames stacked (80 dims at 50 frames/s) ->
  Linear(80, D).
- `mel` (`mel.py`; a simpler log-mel variant, not MelHuBERT's recipe): 80-bin HTK log-mel (25 ms Hann window,
  10 ms hop) -> per-utterance mean/variance normalisation -> two frames stacked (160 dims) -> Linear(160, D).

Every front end: `forward(inputs, lengths (B,) frames, keep_levels=None) -> (B, T, D)`; `num_codebooks` and
`codebook_size` are 0 for the audio front ends. `log_mel` and `mfcc` are also the k-means round-1 features of the
baselines (kmeans `--source mfcc`, HuBERT's 13 MFCC + deltas + delta-deltas).
"""

from __future__ import annotations

from torch import Tensor, nn

from codec2vec.frontends.codec import EMBED_NORMS, CodecFrontend
from codec2vec.frontends.fbank import MelHuBERTFrontend, fbank_frames, kaldi_fbank
from codec2vec.frontends.grid import HOP, SAMPLE_RATE, num_frames
from codec2vec.frontends.mel import MelFrontend, log_mel, mel_filterbank, mfcc
from codec2vec.frontends.waveform import WaveformFrontend

FRONTENDS = ("codec", "waveform", "mel", "melhubert")


def build_frontend(
    name: str,
    *,
    dim: int,
    num_codebooks: int = 0,
    codebook_size: int = 0,
    codebook_vectors: Tensor | None = None,
    codebook_dim: int | None = None,
    freeze: bool = False,
    embed_norm: str = "layernorm",
) -> nn.Module:
    """The front end `name` (codec | waveform | mel | melhubert) for a model of width `dim`; `embed_norm`
    (codec only, `codec.EMBED_NORMS`): what normalises the summed codebook embeddings."""
    if name == "codec":
        return CodecFrontend(
            dim=dim,
            num_codebooks=num_codebooks,
            codebook_size=codebook_size,
            codebook_vectors=codebook_vectors,
            codebook_dim=codebook_dim,
            freeze=freeze,
            embed_norm=embed_norm,
        )
    if embed_norm != "layernorm":
        raise ValueError(f"embed_norm={embed_norm!r} applies to the codec front end only, not {name!r}")
    builders = {"waveform": WaveformFrontend, "mel": MelFrontend, "melhubert": MelHuBERTFrontend}
    if name not in builders:
        raise ValueError(f"unknown front end {name!r}; choose one of {', '.join(FRONTENDS)}")
    return builders[name](dim=dim)


__all__ = [
    "EMBED_NORMS",
    "FRONTENDS",
    "HOP",
    "SAMPLE_RATE",
    "CodecFrontend",
    "MelFrontend",
    "MelHuBERTFrontend",
    "WaveformFrontend",
    "build_frontend",
    "fbank_frames",
    "kaldi_fbank",
    "log_mel",
    "mel_filterbank",
    "mfcc",
    "num_frames",
]
