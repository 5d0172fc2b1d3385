"""The `reconstruction` target: predict the K original codes of each masked frame (Codec2Vec's weakest of three).

One linear classifier per codebook, fused into one `Linear(D, K*V)`; the K cross-entropies are averaged by the
pre-trainer. Labels are the input codes `(B, K, T)` at all K levels, even where quantizer dropout hid some
levels from the input.
"""

from __future__ import annotations

from torch import Tensor, nn

from codec2vec.pretrain.data import Batch
from codec2vec.pretrain.targets.base import valid_labels


class ReconstructionTarget(nn.Module):
    """Predict the K original codes of masked frames (one classifier per codebook, CEs averaged)."""

    name = "reconstruction"

    def __init__(self, *, dim: int, num_codebooks: int, codebook_size: int, weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = [int(codebook_size)] * int(num_codebooks)
        self.weight = float(weight)
        self.head = nn.Linear(dim, num_codebooks * codebook_size)  # K heads fused

    def labels(self, batch: Batch, student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        codes = batch.codes  # (B, K, T): all K levels, even when quantizer dropout hid some from the input
        return [valid_labels(codes[:, k], batch.lengths) for k in range(codes.shape[1])]

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> K x `(N, V)`."""
        return list(self.head(x).split(self.num_classes[0], dim=-1))

    def update(self, step: int) -> None:
        return None
