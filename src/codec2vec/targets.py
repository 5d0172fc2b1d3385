"""Masked-prediction targets behind one protocol; several combine with weights in one run.

Codec2Vec (Tseng & Harwath 2025) trains with three target strategies:
- `reconstruction`: predict the K original codes of each masked frame, one linear classifier per codebook
  (fused into one `Linear(D, K*V)`), the K cross-entropies averaged.
- `clusters`: HuBERT-style offline k-means labels stored in the token store (`codec2vec kmeans`), predicted by
  cosine logits between a projection of the hidden state and learned label embeddings, over a temperature
  (Hsu et al. 2021, `final_dim=256`, `logit_temp=0.1`).
- `online`: DinoSR (Liu et al. 2023): an EMA teacher's instance-normalised top layers assigned to online
  codebooks; lives in `online.py`.

A target returns per-frame labels `(B, T)` long for the valid frames (-100 = ignore); the pre-trainer keeps only
the masked ones and calls `logits(x)` on the masked frames' last hidden state `x (N, D)` -> `[(N, C_i)]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.model import padding_mask

if TYPE_CHECKING:
    from codec2vec.model import Codec2VecEncoder
    from codec2vec.pretrainer import Batch

IGNORE = -100


@runtime_checkable
class Target(Protocol):
    """One masked-prediction objective: labels per frame for each of its heads, and an optional update."""

    name: str
    num_classes: list[int]  # one prediction head per entry
    weight: float

    def labels(self, batch: "Batch", student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        """Each `(B, T)` long, -100 = ignore. `mask (B, T)`: the frames the student has to predict."""
        ...

    def update(self, step: int) -> None:
        """After each optimizer step (EMA teacher, online codebooks); a no-op for offline targets."""
        ...


@dataclass
class TargetsConfig:
    """Which targets to train and their settings (REFERENCE.md step 5)."""

    names: list[str] = field(default_factory=lambda: ["reconstruction"])
    weights: dict[str, float] = field(default_factory=dict)  # name -> loss weight (default 1.0)
    clusters_labels: str = "km"  # label set in the token store
    clusters_temperature: float = 0.1
    clusters_final_dim: int = 256
    online_top_k: int = 8
    online_codewords: int = 256
    online_codebook_decay: float = 0.9
    online_ema_start: float = 0.999
    online_ema_end: float = 0.9999
    online_ema_anneal_steps: int = 30000
    online_freeze_teacher_step: int | None = None


def valid_labels(labels: Tensor, lengths: Tensor) -> Tensor:
    """`(B, T)` labels with -100 at padding."""
    return labels.long().masked_fill(padding_mask(lengths, labels.shape[1]), IGNORE)


class ReconstructionTarget(nn.Module):
    """Predict the K original codes of masked frames (one classifier per codebook, CEs averaged)."""

    name = "reconstruction"

    def __init__(self, *, dim: int, num_codebooks: int, codebook_size: int, weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = [int(codebook_size)] * int(num_codebooks)
        self.weight = float(weight)
        self.head = nn.Linear(dim, num_codebooks * codebook_size)  # K heads fused

    def labels(self, batch: "Batch", student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        codes = batch.codes  # (B, K, T): all K levels, even when quantizer dropout hid some from the input
        return [valid_labels(codes[:, k], batch.lengths) for k in range(codes.shape[1])]

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> K x `(N, V)`."""
        return list(self.head(x).split(self.num_classes[0], dim=-1))

    def update(self, step: int) -> None:
        return None


class ClustersTarget(nn.Module):
    """HuBERT: predict stored k-means labels with cosine logits against label embeddings / temperature."""

    name = "clusters"

    def __init__(self, *, dim: int, num_clusters: int, label_name: str = "km", temperature: float = 0.1,
                 final_dim: int = 256, weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = [int(num_clusters)]
        self.weight = float(weight)
        self.label_name = label_name
        self.temperature = float(temperature)
        self.proj = nn.Linear(dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_clusters, final_dim).uniform_())

    def labels(self, batch: "Batch", student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        if self.label_name not in batch.labels:
            from codec2vec.errors import ConfigError

            raise ConfigError(f"targets: clusters needs the label set {self.label_name!r} in the batch "
                              f"(have {sorted(batch.labels)}); run `codec2vec kmeans STORE --name "
                              f"{self.label_name}` first")
        return [valid_labels(batch.labels[self.label_name], batch.lengths)]

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> `(N, C)` cosine similarities / temperature."""
        y = F.normalize(self.proj(x).float(), dim=-1)  # (N, F)
        e = F.normalize(self.label_embeddings.float(), dim=-1)  # (C, F)
        return [y @ e.t() / self.temperature]

    def update(self, step: int) -> None:
        return None


def _reconstruction(cfg: TargetsConfig, *, encoder: "Codec2VecEncoder", label_classes: dict[str, int],
                    weight: float) -> nn.Module:
    return ReconstructionTarget(dim=encoder.config.dim, num_codebooks=encoder.num_codebooks,
                                codebook_size=encoder.codebook_size, weight=weight)


def _clusters(cfg: TargetsConfig, *, encoder: "Codec2VecEncoder", label_classes: dict[str, int],
              weight: float) -> nn.Module:
    if cfg.clusters_labels not in label_classes:
        from codec2vec.errors import ConfigError

        raise ConfigError(f"targets.clusters_labels={cfg.clusters_labels!r}: the store has no such label set "
                          f"(has {sorted(label_classes)}); run `codec2vec kmeans STORE --name "
                          f"{cfg.clusters_labels}` first")
    return ClustersTarget(dim=encoder.config.dim, num_clusters=label_classes[cfg.clusters_labels],
                          label_name=cfg.clusters_labels, temperature=cfg.clusters_temperature,
                          final_dim=cfg.clusters_final_dim, weight=weight)


def _online(cfg: TargetsConfig, *, encoder: "Codec2VecEncoder", label_classes: dict[str, int],
            weight: float) -> nn.Module:
    from codec2vec.online import OnlineTarget

    return OnlineTarget(encoder=encoder, top_k=cfg.online_top_k, codewords=cfg.online_codewords,
                        codebook_decay=cfg.online_codebook_decay, ema_start=cfg.online_ema_start,
                        ema_end=cfg.online_ema_end, ema_anneal_steps=cfg.online_ema_anneal_steps,
                        freeze_teacher_step=cfg.online_freeze_teacher_step, weight=weight)


# name -> builder(cfg, encoder=, label_classes=, weight=) -> Target module
TARGETS = {
    "reconstruction": _reconstruction,
    "clusters": _clusters,
    "online": _online,
}


def build_targets(cfg: TargetsConfig, *, encoder: "Codec2VecEncoder",
                  label_classes: dict[str, int]) -> list[nn.Module]:
    """The targets named in `cfg.names`, in that order."""
    from codec2vec.errors import ConfigError

    names = [cfg.names] if isinstance(cfg.names, str) else list(cfg.names)
    if not names:
        raise ConfigError("targets.names is empty; choose from " + ", ".join(TARGETS))
    if len(set(names)) != len(names):
        raise ConfigError(f"targets.names={names} repeats a target")
    bad = [n for n in [*names, *cfg.weights] if n not in TARGETS]
    if bad:
        raise ConfigError(f"targets: unknown target(s) {bad}; choose from {list(TARGETS)}")
    return [TARGETS[n](cfg, encoder=encoder, label_classes=label_classes, weight=float(cfg.weights.get(n, 1.0)))
            for n in names]


__all__ = ["IGNORE", "TARGETS", "ClustersTarget", "ReconstructionTarget", "Target", "TargetsConfig",
           "build_targets", "valid_labels"]
