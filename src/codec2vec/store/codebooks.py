"""Compact, exact-rank storage of a codec's codebook vectors `(K, V, D)`.

Many codecs quantize in a small space and project back: DAC's level k maps an 8-dim codebook entry through
its own 1x1 `out_proj` (8 -> 1024, with bias), so each `(V, D)` slice has rank <= 9 although it holds
V x D = 1024 x 1024 floats (48 MiB for 12 levels). `pack_codebooks` stores each level as `left (V, r) @
right (r, D)`, with r the numerical rank at float32 precision (from a float64 SVD), when that is at most half
the size of the full table; otherwise (Lyra: 16 x 64 per level, EnCodec) the full table. `unpack_codebooks`
rebuilds `(K, V, D)`; the relative error is at float32 rounding level (~1e-7).
"""

from __future__ import annotations

import torch
from torch import Tensor

RANK_TOL = 1e-7  # singular values below this fraction of the largest are float32 noise


def pack_codebooks(table: Tensor) -> dict[str, Tensor]:
    """`(K, V, D)` -> tensors to save: `{"codebook_vectors"}` or `{"left" (K, V, r), "right" (K, r, D)}`."""
    cb = table.detach().to("cpu", torch.float64)
    k, v, d = cb.shape
    u, s, vh = torch.linalg.svd(cb, full_matrices=False)  # (K, V, m), (K, m), (K, m, D)
    rank = int((s > RANK_TOL * s[:, :1]).sum(dim=1).max()) if s.numel() else 0
    if rank * (v + d) * 2 > v * d:
        return {"codebook_vectors": table.detach().to("cpu", torch.float32).contiguous()}
    left = (u[:, :, :rank] * s[:, None, :rank]).to(torch.float32).contiguous()  # (K, V, r)
    right = vh[:, :rank, :].to(torch.float32).contiguous()  # (K, r, D)
    return {"left": left, "right": right}


def unpack_codebooks(tensors: dict[str, Tensor]) -> Tensor:
    """The inverse of `pack_codebooks`: `(K, V, D)` float32."""
    if "codebook_vectors" in tensors:
        return tensors["codebook_vectors"]
    return torch.bmm(tensors["left"].double(), tensors["right"].double()).to(torch.float32)  # (K, V, D)
