"""Mimi (Kyutai's codec of Moshi, Defossez et al. 2024) through `transformers.MimiModel`, behind the `Codec` protocol.

`kyutai/mimi`: 24 kHz, SEANet strides 4*5*6*8 = 960 then a stride-2 downsampling, hop 1920 (12.5 frames/s);
split residual VQ of up to 32 levels x 2048: level 0 is the semantic quantizer (distilled from WavLM), levels
1.. the acoustic one. Each half quantizes in its own 256-dim space and has its own `output_proj` (1x1 conv to the
512-dim latent, no bias); the decoder consumes the sum of both halves, so `codebook_vectors()[k, v]` is
`output_proj_half(k)(centroid_k[v])`, shape `(K, 2048, 512)`. Default K = 8, the levels Moshi models.

Shapes: `encode((B, S) float, (B,) samples) -> ((B, K, T) long, (B,) frames = ceil(S / 1920))`;
`decode((B, K, T), (B,)) -> ((B, T * 1920), (B,) samples)`.

The encoder is causal (causal convolutions with zero padding, causal sliding-window attention), so with every
item zero-padded to whole hops, a padded batch gives each item exactly the codes it gets alone.
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import torch
from torch import Tensor

from codec2vec.codecs.hf_common import LoadOptions, describe, open_model, run_decode, run_encode, weights_sha256
from codec2vec.common.errors import Codec2VecError

DEFAULT_CODEBOOKS = 8  # the 8 levels Moshi uses (1.1 kbps)


def mimi_config() -> Any:
    """`MimiConfig` of `kyutai/mimi` (its defaults: 24 kHz, hop 1920, 32 x 2048, 8-layer transformers)."""
    from transformers import MimiConfig

    return MimiConfig()


def tiny_mimi_config() -> Any:
    """A small Mimi on the real grid (hop 1920 at 24 kHz, 12.5 frames/s; 1 semantic + 7 acoustic levels x 256)."""
    from transformers import MimiConfig

    return MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, codebook_size=256, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=8, upsample_groups=32, sliding_window=32,
    )  # fmt: skip


def hop_length(cfg: Any) -> int:
    """Samples per frame of a `MimiConfig`: the SEANet strides, then the downsampling conv from the SEANet rate to
    the latent rate (stride 2 for Mimi)."""
    stride = getattr(cfg, "latent_stride", None) or round(cfg.encodec_frame_rate / cfg.frame_rate)
    return math.prod(int(r) for r in cfg.upsampling_ratios) * int(stride)


class MimiCodec:
    """Mimi through `transformers.MimiModel` (default `kyutai/mimi`, 8 of 32 levels x 2048, 12.5 Hz)."""

    name = "mimi"

    def __init__(
        self, *, path: str | None = "kyutai/mimi", num_codebooks: int | None = None, **load: Unpack[LoadOptions]
    ) -> None:
        hf = open_model(path, "mimi", "MimiModel", hop_length, **load)
        self.model, self.path, self.device, self.revision = hf.model, hf.path, hf.device, hf.revision
        self.sample_rate, self.hop_length, self.frame_rate, self.codebook_size = hf.grid
        cfg = self.model.config
        if cfg.audio_channels != 1:
            raise Codec2VecError(f"mimi: only mono models are supported, this one has {cfg.audio_channels} channels")
        total, semantic = int(cfg.num_quantizers), int(cfg.num_semantic_quantizers)
        k = min(DEFAULT_CODEBOOKS, total) if num_codebooks is None else int(num_codebooks)
        if not max(1, semantic) <= k <= total:
            raise Codec2VecError(f"mimi: num_codebooks must be in {max(1, semantic)}..{total}, got {num_codebooks}")
        self.num_codebooks = k
        self.lookahead_frames = 0  # causal
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(S / hop)."""
        return run_encode(
            self, wav, lengths, lambda x: self.model.encode(x, num_quantizers=self.num_codebooks).audio_codes
        )

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T * hop)`, samples `(B,)` = frames * hop."""
        return run_decode(self, codes, lengths, lambda c: self.model.decode(c).audio_values)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, H)`: each level's centroids through its half's `output_proj` (semantic or acoustic, no bias)."""
        quantizer = self.model.quantizer
        semantic = quantizer.num_semantic_quantizers
        halves = [
            (quantizer.semantic_residual_vector_quantizer, range(min(semantic, self.num_codebooks))),
            (quantizer.acoustic_residual_vector_quantizer, range(self.num_codebooks - semantic)),
        ]
        rows = []
        with torch.no_grad():
            for rvq, levels in halves:
                for i in levels:
                    embed = rvq.layers[i].codebook.embed  # (V, d)
                    proj = rvq.output_proj(embed.t()[None])[0].t() if rvq.output_proj is not None else embed
                    rows.append(proj)  # (V, H)
        return torch.stack(rows).to("cpu", torch.float32)  # (K, V, H)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, H, T)` for codes `(B, K, T)` (`quantizer.decode`)."""
        with torch.no_grad():
            return self.model.quantizer.decode(codes.to(self.device)).to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        """Source, revision, grid, K and the weights' sha256: what identifies the code stream."""
        if self._weights_hash is None:
            self._weights_hash = weights_sha256(self.model)
        semantic = int(self.model.config.num_semantic_quantizers)
        return {**describe(self, self.path, self.revision), "num_semantic_codebooks": semantic,
                "weights_sha256": self._weights_hash}  # fmt: skip
