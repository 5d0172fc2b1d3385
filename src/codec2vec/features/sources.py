"""Feature sources: what a probe or `codec2vec extract` runs on codes `(B, K, T)`, lengths `(B,)` to get hidden
states `[n] x (B, T, D)` (see `features.py` for the kinds and the cache that keys on `FeatureSource.key`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from codec2vec.errors import Codec2VecError, ConfigError
from codec2vec.model import Codec2VecEncoder
from codec2vec.pretrain.checkpoint import check_architecture, load_model, resolve
from codec2vec.pretrain.config import config_from_dict

KINDS = ("pretrained", "codec", "random")


def digest(*parts: Any) -> str:
    """A 16-hex-digit SHA-256 of the parts (as sorted JSON): the cache keys of feature sources and inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FeatureSource:
    """An upstream for probing: codes -> `[num_layers] x (B, T, dim)`, with a cache key and a description."""

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        key: str,
        meta: dict[str, Any],
        num_layers: int,
        dim: int | None,
        build: Callable[[Tensor], torch.nn.Module],
    ) -> None:
        self.kind, self.name, self.key, self.meta = kind, name, key, meta
        self.num_layers, self.dim = num_layers, dim
        self._build = build
        self.module: torch.nn.Module | None = None

    def prepare(self, codebook_vectors: Tensor) -> None:
        """Build the module from the codec's `(K, V, D_codec)` codebook vectors (kept by every token store)."""
        if self.module is None:
            self.module = self._build(codebook_vectors.float()).eval()
            if self.dim is None:
                self.dim = int(codebook_vectors.shape[-1])

    @torch.no_grad()
    def __call__(self, codes: Tensor, lengths: Tensor) -> list[Tensor]:
        """codes `(B, K, T)`, lengths `(B,)` -> `[num_layers] x (B, T, dim)` float32, zero past each length."""
        from codec2vec.features.upstream import extract

        if self.module is None:
            raise Codec2VecError(f"feature source {self.name}: call prepare(codebook_vectors) first")
        if self.kind == "codec":
            keep = (torch.arange(codes.shape[-1])[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
            return [self.module.embed(codes).float() * keep]  # type: ignore[operator]
        layers, _ = extract(self.module, codes, lengths)  # type: ignore[arg-type]
        return layers

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "key": self.key, "num_layers": self.num_layers, "dim": self.dim}


def _encoder_like(meta: dict[str, Any], vectors: Tensor | None, seed: int | None):

    cfg = config_from_dict(meta["config"]).model
    codec = meta["codec"]
    with torch.random.fork_rng(devices=[]):  # a fixed seed without touching the caller's random state
        torch.manual_seed(0 if seed is None else seed)
        return Codec2VecEncoder(
            config=cfg,
            num_codebooks=int(codec["num_codebooks"]),
            codebook_size=int(codec["codebook_size"]),
            codebook_vectors=vectors,
        )


def checkpoint_source(ckpt: str | Path) -> FeatureSource:
    """Every layer of a pre-trained checkpoint."""

    model, meta = load_model(ckpt)
    key = "ckpt-" + str(meta.get("files", {}).get("model.safetensors", digest(str(resolve(ckpt)))))[:16]
    return FeatureSource(
        kind="pretrained",
        name=str(ckpt),
        key=key,
        meta=meta,
        num_layers=int(model.config.num_layers) + 1,
        dim=int(model.config.dim),
        build=lambda _vectors: model,
    )


def feature_source(kind: str, ckpt: str | Path | None, *, seed: int = 0) -> FeatureSource:
    """`pretrained` (the checkpoint), `codec` (its codec's summed codebook vectors, one layer) or `random`
    (an encoder of the checkpoint's size, randomly initialised with `seed`, tables from the codec)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown feature source {kind!r}; choose one of {', '.join(KINDS)}")
    if ckpt is None:
        raise ConfigError(f"feature source {kind!r} needs a checkpoint (for its codec and size)")
    if kind == "pretrained":
        return checkpoint_source(ckpt)

    meta = check_architecture(ckpt)  # the random reference is built from the config: checked against the weights
    chash = meta["codec"]["config_hash"]
    if kind == "codec":
        return FeatureSource(
            kind="codec",
            name="codec",
            key=f"codec-{chash}",
            meta=meta,
            num_layers=1,
            dim=None,
            build=lambda vectors: _encoder_like(meta, vectors, 0),
        )
    model_cfg = meta["config"]["model"]
    return FeatureSource(
        kind="random",
        name="random",
        key=f"random-{digest(model_cfg, chash, seed)}",
        meta=meta,
        num_layers=int(model_cfg["num_layers"]) + 1,
        dim=int(model_cfg["dim"]),
        build=lambda vectors: _encoder_like(meta, vectors, seed),
    )
