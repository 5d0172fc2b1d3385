"""The `clusters` target: HuBERT-style offline k-means labels (Hsu et al. 2021).

Labels come from a label set in the token store (`codec2vec kmeans`); the head projects the hidden state to
`final_dim` (256) and scores it by cosine similarity against learned label embeddings over a temperature
(`logit_temp` 0.1): `(N, D) -> (N, C)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.pretrain.data import Batch
from codec2vec.pretrain.targets.base import valid_labels


class ClustersTarget(nn.Module):
    """HuBERT: predict stored k-means labels with cosine logits against label embeddings / temperature."""

    name = "clusters"

    def __init__(
        self,
        *,
        dim: int,
        num_clusters: int,
        label_name: str = "km",
        temperature: float = 0.1,
        final_dim: int = 256,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = [int(num_clusters)]
        self.weight = float(weight)
        self.label_name = label_name
        self.temperature = float(temperature)
        self.proj = nn.Linear(dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_clusters, final_dim).uniform_())

    def labels(self, batch: Batch, student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        return [valid_labels(batch.labels[self.label_name], batch.lengths)]

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> `(N, C)` cosine similarities / temperature."""
        y = F.normalize(self.proj(x).float(), dim=-1)  # (N, F)
        e = F.normalize(self.label_embeddings.float(), dim=-1)  # (C, F)
        return [y @ e.t() / self.temperature]

    def update(self, step: int) -> None:
        return None
