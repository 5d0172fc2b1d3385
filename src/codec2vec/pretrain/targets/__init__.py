"""Masked-prediction targets behind one protocol (`base.Target`); several combine with weights in one run.

`TARGETS` maps each name to a builder `(cfg, encoder=, label_classes=, weight=) -> Target module`:
`reconstruction` (`reconstruction.py`), `clusters` (`clusters.py`, HuBERT k-means labels) and `online`
(`online.py`, DinoSR). `build_targets(cfg, ...)` makes the ones a config names, in order.
"""

from __future__ import annotations

from torch import nn

from codec2vec.common.errors import ConfigError
from codec2vec.model import Codec2VecEncoder
from codec2vec.pretrain.targets.base import IGNORE, Target, TargetsConfig, valid_labels
from codec2vec.pretrain.targets.clusters import ClustersTarget
from codec2vec.pretrain.targets.online import OnlineTarget
from codec2vec.pretrain.targets.reconstruction import ReconstructionTarget


def _reconstruction(
    cfg: TargetsConfig, *, encoder: Codec2VecEncoder, label_classes: dict[str, int], weight: float
) -> nn.Module:
    return ReconstructionTarget(
        dim=encoder.config.dim, num_codebooks=encoder.num_codebooks, codebook_size=encoder.codebook_size, weight=weight
    )


def _clusters(
    cfg: TargetsConfig, *, encoder: Codec2VecEncoder, label_classes: dict[str, int], weight: float
) -> nn.Module:
    c = cfg.clusters
    if c.labels not in label_classes:
        raise ConfigError(
            f"targets.clusters.labels={c.labels!r}: the store has no such label set "
            f"(has {sorted(label_classes)}); run `codec2vec kmeans STORE --name {c.labels}` first"
        )
    return ClustersTarget(
        dim=encoder.config.dim,
        num_clusters=label_classes[c.labels],
        label_name=c.labels,
        temperature=c.temperature,
        final_dim=c.final_dim,
        weight=weight,
    )


def _online(
    cfg: TargetsConfig, *, encoder: Codec2VecEncoder, label_classes: dict[str, int], weight: float
) -> nn.Module:
    o = cfg.online
    return OnlineTarget(
        encoder=encoder,
        top_k=o.top_k,
        codewords=o.codewords,
        codebook_decay=o.codebook_decay,
        ema_start=o.ema_start,
        ema_end=o.ema_end,
        ema_anneal_steps=o.ema_anneal_steps,
        freeze_teacher_step=o.freeze_teacher_step,
        target_point=o.target_point,
        reseed=o.reseed,
        warn_used=o.warn_used,
        weight=weight,
    )


# name -> builder(cfg, encoder=, label_classes=, weight=) -> Target module
TARGETS = {
    "reconstruction": _reconstruction,
    "clusters": _clusters,
    "online": _online,
}


def build_targets(cfg: TargetsConfig, *, encoder: Codec2VecEncoder, label_classes: dict[str, int]) -> list[nn.Module]:
    """The targets named in `cfg.names`, in that order."""
    names = [cfg.names] if isinstance(cfg.names, str) else list(cfg.names)
    if not names:
        raise ConfigError("targets.names is empty; choose from " + ", ".join(TARGETS))
    if len(set(names)) != len(names):
        raise ConfigError(f"targets.names={names} repeats a target")
    bad = [n for n in [*names, *cfg.weights] if n not in TARGETS]
    if bad:
        raise ConfigError(f"targets: unknown target(s) {bad}; choose from {list(TARGETS)}")
    return [
        TARGETS[n](cfg, encoder=encoder, label_classes=label_classes, weight=float(cfg.weights.get(n, 1.0)))
        for n in names
    ]


__all__ = [
    "IGNORE",
    "TARGETS",
    "ClustersTarget",
    "OnlineTarget",
    "ReconstructionTarget",
    "Target",
    "TargetsConfig",
    "build_targets",
    "valid_labels",
]
