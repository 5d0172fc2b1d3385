"""The `Codec` protocol every backend implements, and the metadata a token store keeps about it.

Shapes: waveforms `(B, S)` float in [-1, 1] at `sample_rate`; codes `LongTensor (B, K, T)`
at `frame_rate`; lengths `(B,)` in samples or frames. `codebook_vectors()` is `(K, V, D)` in the codec's
latent space: summing the rows selected by a frame's K codes gives the codec's quantized latent.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Codec(Protocol):
    """A neural audio codec: waveform <-> discrete codes."""

    name: str
    sample_rate: int  # Hz that encode() expects
    frame_rate: float  # frames per second
    num_codebooks: int  # K
    codebook_size: int  # V

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` float, `(B,)` samples -> codes `(B, K, T)` long, `(B,)` frames."""
        ...

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, K, T)`, `(B,)` frames -> `(B, S)` float, `(B,)` samples."""
        ...

    def codebook_vectors(self) -> Tensor:
        """`(K, V, D)`: per-level latent contribution of each entry."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-able description (checkpoint id, levels, ...) that identifies the exact code stream."""
        ...


@dataclass(frozen=True)
class CodecInfo:
    """What a token store or checkpoint records about the codec that made its codes."""

    name: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    config: dict[str, Any]
    config_hash: str

    @property
    def bits_per_code(self) -> int:
        """Exact bit width of one code: ceil(log2 V)."""
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def kbps(self) -> float:
        """Nominal bitrate of the raw code stream."""
        return self.frame_rate * self.num_codebooks * self.bits_per_code / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecInfo:
        return cls(
            name=str(d["name"]),
            sample_rate=int(d["sample_rate"]),
            frame_rate=float(d["frame_rate"]),
            num_codebooks=int(d["num_codebooks"]),
            codebook_size=int(d["codebook_size"]),
            config=dict(d.get("config", {})),
            config_hash=str(d["config_hash"]),
        )


LOCATION_KEYS = ("path", "revision", "device")  # where weights came from, not what they are


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of what identifies a code stream: the codec config without `LOCATION_KEYS`, so
    the same weights (named by their sha256 in the config) loaded from a hub id or a local copy match."""
    ident = {k: v for k, v in config.items() if k not in LOCATION_KEYS}
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def codec_info(codec: Codec) -> CodecInfo:
    """The `CodecInfo` of a live codec."""
    cfg = codec.config()
    return CodecInfo(
        name=codec.name,
        sample_rate=int(codec.sample_rate),
        frame_rate=float(codec.frame_rate),
        num_codebooks=int(codec.num_codebooks),
        codebook_size=int(codec.codebook_size),
        config=cfg,
        config_hash=config_hash(cfg),
    )
