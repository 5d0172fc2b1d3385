"""EnCodec (Defossez et al. 2022) through `transformers.EncodecModel`, behind the `Codec` protocol.

`facebook/encodec_24khz`: 24 kHz, hop 320 (75 frames/s), residual VQ of up to 32 euclidean codebooks x 1024.
The bandwidth chooses how many levels are used (750 bit/s each): 1.5 / 3 / 6 / 12 / 24 kbps = 2 / 4 / 8 / 16 / 32
levels; `num_codebooks` picks the bandwidth (default 8 = 6 kbps, the bitrate of DAC 16 kHz). The decoder
consumes the plain sum of the selected centroids, so `codebook_vectors()` is the codebooks, `(K, 1024, 128)`.

Shapes: `encode((B, S) float, (B,) samples) -> ((B, K, T) long, (B,) frames = ceil(S / 320))`;
`decode((B, K, T), (B,)) -> ((B, T * 320), (B,) samples)`.

The encoder is causal (causal convolutions, a unidirectional LSTM), so with every item zero-padded to whole
hops, a padded batch gives each item exactly the codes it gets alone. One wrinkle, handled here: the convolutions
reflect-pad on the left, and the last one (kernel 7 at the frame rate) reads 6 frames ahead of frame 0, so short
inputs are padded to `min_frames` = 7 frames before encoding and cropped after.

The 48 kHz model normalises and chunks its input; its decoder needs per-chunk scales a token store does not
keep, so it is refused.
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import torch
from torch import Tensor

from codec2vec.codecs.hf_common import LoadOptions, describe, open_model, run_decode, run_encode, weights_sha256
from codec2vec.common.errors import Codec2VecError

DEFAULT_CODEBOOKS = 8  # 6 kbps at 75 Hz: the bitrate of DAC 16 kHz


def encodec_24khz_config() -> Any:
    """`EncodecConfig` of `facebook/encodec_24khz` (its defaults: hop 320, 32 x 1024 of dim 128, 24 kHz)."""
    from transformers import EncodecConfig

    return EncodecConfig()


def tiny_encodec_config() -> Any:
    """A small EnCodec on the 24 kHz grid (hop 320, 75 frames/s, 32 x 1024 levels of dimension 16)."""
    from transformers import EncodecConfig

    return EncodecConfig(hidden_size=16, num_filters=4, num_lstm_layers=1, codebook_size=1024)


class EncodecCodec:
    """EnCodec through `transformers.EncodecModel` (default `facebook/encodec_24khz`, 8 levels = 6 kbps)."""

    name = "encodec"

    def __init__(
        self,
        *,
        path: str | None = "facebook/encodec_24khz",
        num_codebooks: int | None = None,
        **load: Unpack[LoadOptions],
    ) -> None:
        hf = open_model(
            path, "encodec", "EncodecModel", lambda c: math.prod(int(r) for r in c.upsampling_ratios), **load
        )
        self.model, self.path, self.device, self.revision = hf.model, hf.path, hf.device, hf.revision
        self.sample_rate, self.hop_length, self.frame_rate, self.codebook_size = hf.grid
        cfg = self.model.config
        if cfg.normalize or cfg.chunk_length_s is not None:
            raise Codec2VecError(
                f"encodec: {self.path or 'this model'} normalises or chunks its input (the 48 kHz model); its "
                "decoder needs per-chunk scales that a token store does not keep. Use facebook/encodec_24khz"
            )
        if cfg.audio_channels != 1:
            raise Codec2VecError(f"encodec: only mono models are supported, this one has {cfg.audio_channels} channels")
        rvq = self.model.quantizer
        levels = {rvq.get_num_quantizers_for_bandwidth(float(bw)): float(bw) for bw in cfg.target_bandwidths}
        k = (
            num_codebooks
            if num_codebooks is not None
            else (DEFAULT_CODEBOOKS if DEFAULT_CODEBOOKS in levels else max(levels))
        )
        if k not in levels:
            raise Codec2VecError(
                f"encodec: num_codebooks={num_codebooks} matches no bandwidth of this model; choose one of "
                + ", ".join(f"{n} ({bw:g} kbps)" for n, bw in sorted(levels.items()))
            )
        self.num_codebooks, self.bandwidth = int(k), levels[k]
        self.lookahead_frames = 0  # causal
        self.min_frames = int(cfg.last_kernel_size)  # see the module docstring
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(S / hop)."""

        def encode(x: Tensor) -> Tensor:
            return self.model.encode(x, bandwidth=self.bandwidth).audio_codes[0]  # (chunks=1, B, K, T) -> (B, K, T)

        return run_encode(self, wav, lengths, encode, self.min_frames)

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T * hop)`, samples `(B,)` = frames * hop."""
        return run_decode(self, codes, lengths, lambda c: self.model.decode(c[None], [None]).audio_values)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, D)`: the euclidean codebooks themselves (the decoder consumes their sum directly)."""
        layers = self.model.quantizer.layers[: self.num_codebooks]
        return torch.stack([lv.codebook.embed.detach() for lv in layers]).to("cpu", torch.float32)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, D, T)` for codes `(B, K, T)` (`quantizer.decode`)."""
        with torch.no_grad():
            return self.model.quantizer.decode(codes.to(self.device).transpose(0, 1)).to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        """Source, revision, grid, K / bandwidth and the weights' sha256: what identifies the code stream."""
        if self._weights_hash is None:
            self._weights_hash = weights_sha256(self.model)
        return {**describe(self, self.path, self.revision), "bandwidth_kbps": self.bandwidth,
                "weights_sha256": self._weights_hash}  # fmt: skip
