"""DAC, the Descript Audio Codec (Kumar et al. 2023), through `transformers.DacModel`, behind the `Codec` protocol.

`descript/dac_16khz` is the codec of Codec2Vec (Tseng & Harwath 2025): 12 residual codebooks x 1024 entries at
50 frames/s (hop 2*4*5*8 = 320 at 16 kHz, 6 kbps). Each level k quantizes in an 8-dim space and maps back with
its own `out_proj` (1x1 conv, 8 -> 1024, with bias); the decoder consumes the sum of those projections, so
`codebook_vectors()[k, v] = out_proj_k(codebook_k[v])`, shape `(K, 1024, 1024)` for 16 kHz.

Shapes: `encode((B, S) float, (B,) samples) -> ((B, K, T) long, (B,) frames = ceil(S / 320))`;
`decode((B, K, T), (B,)) -> ((B, T * 320), (B,) samples)`.

The encoder is not causal: its receptive field (~5300 samples at 16 kHz) reaches `lookahead_frames` frames
(9 for the 16/24 kHz layouts, 8 for 44.1 kHz) past an item's last sample. Where a lone item would meet the
convolutions' own zero padding, a padded batch holds computed activations of silence, so the last frames
would depend on the batch. `encode` therefore appends `2 * lookahead_frames` frames of silence to every
item (and crops them off): no frame of an item ever sees the end of the input tensor, and an item's codes are
the same alone or in any batch, bit for bit (so a resumed or re-batched tokenize run gives the same store).
The price: the last frames are those of the item followed by silence, as in a longer recording.

`DacConfig`'s defaults are NOT the 16 kHz layout: `dac_16khz_config()` (and the 24 / 44.1 kHz ones) build the
real architectures (random weights when no checkpoint can be downloaded: tests, benchmarks).
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import torch
from torch import Tensor

from codec2vec.codecs.hf_common import LoadOptions, describe, open_model, run_decode, run_encode, weights_sha256
from codec2vec.common.errors import Codec2VecError


def _dac_config(rate: int, ratios: list[int], levels: int, *, width: int = 64, size: int = 1024, dim: int = 8) -> Any:
    """A `DacConfig`: encoder width `width` doubling at each of `ratios`, decoder width 24 * width, `levels` x `size`."""
    from transformers import DacConfig

    return DacConfig(
        encoder_hidden_size=width, downsampling_ratios=ratios, decoder_hidden_size=24 * width,
        n_codebooks=levels, codebook_size=size, codebook_dim=dim, sampling_rate=rate,
    )  # fmt: skip


def dac_16khz_config() -> Any:
    """`DacConfig` with the real layout of `descript/dac_16khz` (hop 2*4*5*8 = 320, 12 x 1024, dim 8, 16 kHz)."""
    return _dac_config(16000, [2, 4, 5, 8], 12)


def dac_24khz_config() -> Any:
    """`DacConfig` of `descript/dac_24khz` (hop 320, 32 x 1024, 24 kHz, 75 frames/s)."""
    return _dac_config(24000, [2, 4, 5, 8], 32)


def dac_44khz_config() -> Any:
    """`DacConfig` of `descript/dac_44khz` (hop 2*4*8*8 = 512, 9 x 1024, 44.1 kHz, ~86.1 frames/s)."""
    return _dac_config(44100, [2, 4, 8, 8], 9)


def tiny_dac_config() -> Any:
    """A small DAC on the 16 kHz grid (hop 320, 4 x 64 codebooks of dim 4) for fast tests."""
    return _dac_config(16000, [2, 4, 5, 8], 4, width=4, size=64, dim=4)


def lookahead_frames(cfg: Any) -> int:
    """Frames past an item's end that DAC's encoder still sees: half its receptive field, rounded up."""
    field, jump = 1 + 6, 1  # first conv, kernel 7
    for stride in cfg.downsampling_ratios:
        field += sum(6 * d * jump for d in (1, 3, 9))  # residual units: kernel 7, dilations 1, 3, 9
        field += (2 * stride - 1) * jump  # strided conv, kernel 2 * stride
        jump *= stride
    field += 2 * jump  # last conv, kernel 3
    return math.ceil(field / 2 / jump)


class DacCodec:
    """DAC through `transformers.DacModel` (default `descript/dac_16khz`: all 12 levels x 1024, 50 Hz)."""

    name = "dac"

    def __init__(
        self, *, path: str | None = "descript/dac_16khz", num_codebooks: int | None = None, **load: Unpack[LoadOptions]
    ) -> None:
        hf = open_model(path, "dac", "DacModel", lambda c: math.prod(int(r) for r in c.downsampling_ratios), **load)
        self.model, self.path, self.device, self.revision = hf.model, hf.path, hf.device, hf.revision
        self.sample_rate, self.hop_length, self.frame_rate, self.codebook_size = hf.grid
        cfg = self.model.config
        k = int(cfg.n_codebooks) if num_codebooks is None else int(num_codebooks)
        if not 1 <= k <= int(cfg.n_codebooks):
            raise Codec2VecError(f"dac: num_codebooks must be in 1..{cfg.n_codebooks}, got {num_codebooks}")
        self.num_codebooks = k
        self.lookahead_frames = lookahead_frames(cfg)
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(S / hop)."""
        return run_encode(
            self,
            wav,
            lengths,
            lambda x: self.model.encode(x, self.num_codebooks).audio_codes,
            tail_frames=2 * self.lookahead_frames,
        )

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T * hop)`, samples `(B,)` = frames * hop."""
        return run_decode(self, codes, lengths, lambda c: self.model.decode(audio_codes=c).audio_values)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, D)`: level k's entry v through that level's `out_proj` (bias included); D = 1024 for 16 kHz."""
        rows = []
        with torch.no_grad():
            for q in self.model.quantizer.quantizers[: self.num_codebooks]:
                rows.append(q.out_proj(q.codebook.weight.t()[None])[0].t())  # (V, D)
        return torch.stack(rows).to("cpu", torch.float32)  # (K, V, D)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, D, T)` for codes `(B, K, T)` (`quantizer.from_codes`)."""
        with torch.no_grad():
            return self.model.quantizer.from_codes(codes.to(self.device))[0].to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        """Source, revision, grid, K and the weights' sha256: what identifies the code stream."""
        if self._weights_hash is None:
            self._weights_hash = weights_sha256(self.model)
        ratios = [int(r) for r in self.model.config.downsampling_ratios]
        return {**describe(self, self.path, self.revision), "downsampling_ratios": ratios,
                "weights_sha256": self._weights_hash}  # fmt: skip
