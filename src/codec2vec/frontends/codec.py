"""The `codec` front end (Codec2Vec, Tseng & Harwath 2025): codes `(B, K, T)` -> sum_k E_k[codes[:, k]] (one fused
`embedding_bag` over a `(K*V, D_codec)` table initialised from the codec's codebook vectors) -> LayerNorm ->
Linear(D_codec, D) -> `(B, T, D)`. Quantizer dropout keeps the first `keep_levels[b]` levels of row b.

`embed_norm` picks what sits between the sum and the projection (`EMBED_NORMS`):
- `layernorm` (default, the paper's reading): a LayerNorm with learned affine over each frame's summed vector. It
  removes each frame's scale, so a frame's loudness (the latent's norm) reaches the projection only through its
  direction, and a sum of fewer levels (quantizer dropout) has the scale of all K.
- `scale`: the sum divided by sqrt(levels kept) (`keep_levels[b]`, else K), no per-frame normalisation: frames keep
  their relative norms (as corpus-normalised mel features do), and the sum of n roughly independent level vectors,
  whose norm grows as sqrt(n), keeps one scale whether quantizer dropout keeps 1 level or all K.
- `none`: the raw sum (the codec's quantized latent at initialisation) straight into the projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EMBED_NORMS = ("layernorm", "scale", "none")


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
        embed_norm: str = "layernorm",
    ) -> None:
        super().__init__()
        if embed_norm not in EMBED_NORMS:
            raise ValueError(f"unknown embed_norm {embed_norm!r}; choose one of {', '.join(EMBED_NORMS)}")
        self.norm_mode = embed_norm
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
        # Named as before the choice existed, so checkpoints keep their keys; `scale`/`none` have no parameters here.
        self.embed_norm: nn.Module = nn.LayerNorm(dc) if embed_norm == "layernorm" else nn.Identity()
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
        e = self.embed(codes, keep_levels)  # (B, T, D_codec)
        if self.norm_mode == "scale":
            n = self.num_codebooks
            kept = torch.full((e.shape[0],), n, device=e.device) if keep_levels is None else keep_levels  # (B,)
            e = e / kept.to(e.dtype).clamp(min=1).sqrt()[:, None, None]  # (B, T, D_codec)
        return self.proj(self.embed_norm(e))  # (B, T, D)


# --- the waveform front end (HuBERT's CNN) --------------------------------------------------------
