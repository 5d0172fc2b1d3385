"""Masked-prediction targets behind one protocol; several combine with weights in one run.

Codec2Vec (Tseng & Harwath 2025) trains with three target strategies:
- `reconstruction`: predict the K original codes of each masked frame, one linear classifier per codebook
  (fused into one `Linear(D, K*V)`), the K cross-entropies averaged.
- `clusters`: HuBERT-style offline k-means labels stored in the token store (`codec2vec kmeans`), predicted by
  cosine logits between a projection of the hidden state and learned label embeddings, over a temperature
  (Hsu et al. 2021, `final_dim=256`, `logit_temp=0.1`).
- `online`: DinoSR (Liu et al. 2023): an EMA teacher's instance-normalised top layers assigned to online
  codebooks (`online.py`).

This module holds what they share: the `Target` protocol, `TargetsConfig` (with the `clusters` and `online`
sections) and `valid_labels`; one file per
strategy holds the strategy; `pretrain/targets/__init__.py` holds the `TARGETS` table and `build_targets`.

A target returns per-frame labels `(B, T)` long for the valid frames (-100 = ignore); the pre-trainer keeps only
the masked ones and calls `logits(x)` on the masked frames' last hidden state `x (N, D)` -> `[(N, C_i)]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from torch import Tensor

from codec2vec.model import padding_mask
from codec2vec.pretrain.data import IGNORE, Batch


@runtime_checkable
class Target(Protocol):
    """One masked-prediction objective: labels per frame for each of its heads, and an optional update."""

    name: str
    num_classes: list[int]  # one prediction head per entry
    weight: float

    def labels(self, batch: Batch, student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        """Each `(B, T)` long, -100 = ignore. `mask (B, T)`: the frames the student has to predict."""
        ...

    def logits(self, x: Tensor) -> list[Tensor]:
        """The masked frames' last hidden states `(N, D)` -> one `(N, C_i)` per head."""
        ...

    def update(self, step: int) -> None:
        """After each optimizer step (EMA teacher, online codebooks); a no-op for offline targets."""
        ...


@dataclass
class ClustersConfig:
    """The clusters target's knobs (`targets.clusters.*`; HuBERT's `final_dim` and `logit_temp`)."""

    labels: str = "km"  # label set in the token store
    temperature: float = 0.1
    final_dim: int = 256


@dataclass
class OnlineConfig:
    """The online target's knobs (`targets.online.*`; DinoSR's teacher and codebooks)."""

    top_k: int = 8  # teacher layers with a codebook each (the top ones)
    codewords: int = 256
    codebook_decay: float = 0.9
    ema_start: float = 0.999
    ema_end: float = 0.9999
    ema_anneal_steps: int = 30000
    freeze_teacher_step: int | None = None  # teacher and its own copy of the front end frozen from here
    target_point: str = "ffn"  # ffn: FFN output before residual + LayerNorm (DinoSR) | layer: layer output
    reseed: bool = False  # restart codewords that got no frame for RESEED_AFTER steps (not in DinoSR)
    warn_used: float = 0.5  # warn once when a teacher layer uses fewer than this share of its codewords


@dataclass
class TargetsConfig:
    """Which targets to train and their settings; each strategy's knobs in its own section."""

    # Flat keys of files and checkpoints written before the sections existed -> their place now (they still load).
    RENAMED: ClassVar[dict[str, str]] = {
        **{f"clusters_{f}": f"clusters.{f}" for f in ("labels", "temperature", "final_dim")},
        **{
            f"online_{f}": f"online.{f}"
            for f in ("top_k", "codewords", "codebook_decay", "ema_start", "ema_end", "ema_anneal_steps")
            + ("freeze_teacher_step", "target_point", "reseed", "warn_used")
        },
    }

    names: list[str] = field(default_factory=lambda: ["reconstruction"])
    weights: dict[str, float] = field(default_factory=dict)  # name -> loss weight (default 1.0)
    clusters: ClustersConfig = field(default_factory=ClustersConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    # HuBERT's `pred_nomask_weight`: every target also scores the unmasked frames, with this weight relative to its
    # masked-frame loss (logged as `<target>_unmasked`). 0 = masked frames only (HuBERT Base, DinoSR).
    unmasked_weight: float = 0.0


def valid_labels(labels: Tensor, lengths: Tensor) -> Tensor:
    """`(B, T)` labels with -100 at padding."""
    return labels.long().masked_fill(padding_mask(lengths, labels.shape[1]), IGNORE)


__all__ = ["IGNORE", "ClustersConfig", "OnlineConfig", "Target", "TargetsConfig", "valid_labels"]
