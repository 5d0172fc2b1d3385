"""Feature sources: the one way k-means, probes, `codec2vec extract`, `Upstream` and the demo read representations.

A `FeatureSource` maps one batch of inputs and its lengths `(B,)` in frames to hidden states
`[num_layers] x (B, T, D)` float32, zero past each length. Its inputs (`reads`) are codes `(B, K, T)` long, or
16 kHz audio `(B, S)` float with S = 320 T for the audio front ends (the continuous-input baselines) and the
spectral features. The kinds:
  - `pretrained`: every layer of a checkpoint's encoder (`extract`), n = L + 1;
  - `random`: an encoder of the checkpoint's size at initialisation (tables from the codec, fixed seed), n = L + 1;
  - `codec`: the codec's own embeddings, the summed codebook vectors (the quantized latent), no Transformer, n = 1;
  - `mfcc` / `fbank`: HuBERT's MFCC `(T, 78)` / MelHuBERT's log-mel fbank `(T, 80)` of the audio, n = 1.
Its `key` names what it computes (checkpoint weights' sha256, codec config hash, random config + seed), so cached
features are reused only for exactly the same upstream; `layer` is the one layer a one-layer reader (k-means)
takes (`CKPT:LAYER`, default the middle one).

`source.features(inputs, ids, layers=...)` is the one batching loop: utterances in length order (a frame-wise
source, without context, keeps the given order), in batches of at most `batch_frames` padded frames, yielding
`(id, (T, n, D))`. `inputs` (`features/inputs.py`) reads a batch of codes or audio for given ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.common.errors import Codec2VecError, ConfigError
from codec2vec.frontends import fbank_frames, mfcc
from codec2vec.model import Codec2VecEncoder
from codec2vec.pretrain.checkpoint import check_architecture, load_model, resolve
from codec2vec.pretrain.config import config_from_dict

KINDS = ("pretrained", "codec", "random")  # what a probe compares
AUDIO_FRONTENDS = ("waveform", "mel", "melhubert")  # encoders that read audio, not codes
# the spectral sources: (utterance (S,) at 16 kHz, frames T) -> (T, D), and D
SPECTRAL: dict[str, tuple[Callable[[Tensor, int], Tensor], int]] = {
    "mfcc": (mfcc, 78),  # HuBERT: 13 MFCC + deltas + delta-deltas, two 10 ms frames per 20 ms frame
    "fbank": (fbank_frames, 80),  # MelHuBERT: 40-dim Kaldi log-mel fbank, two 10 ms frames per 20 ms frame
    "decoded-mfcc": (mfcc, 78),  # HuBERT's MFCC of the audio DECODED from a store's tokens (features/decoded.py)
}
WAVEFORM_BATCH_FRAMES = 1024  # the waveform CNN's first layers hold 64 x 512 float32 per frame (131 KB): a
# 1024-frame batch keeps each of its activations near 134 MB (20k frames made 2.6 GB tensors, 7.8 GB at peak)
AUDIO_BATCH_FRAMES = 3000  # the other audio encoders: 60 s of audio per batch


def digest(*parts: Any) -> str:
    """A 16-hex-digit SHA-256 of the parts (as sorted JSON): the cache keys of feature sources and inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Inputs(Protocol):
    """What a source reads (`features/inputs.py`): ids -> a padded batch of codes or audio, and frame counts."""

    reads: str  # "codes" | "audio"

    def num_frames(self, uid: str) -> int: ...

    def batch(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]: ...  # (codes (B, K, T) | audio (B, S), (B,))

    def codebook_vectors(self) -> Tensor | None: ...  # (K, V, D_codec) for codes, None for audio


@torch.no_grad()
def extract(model: Codec2VecEncoder, codes: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
    """codes `(B, K, T)` long, lengths `(B,)` frames -> (`[L + 1] x (B, T, D)` float32, lengths `(B,)`). A baseline
    (`model.frontend` waveform or mel) takes float audio `(B, S)` at 16 kHz instead of codes, T = ceil(S / 320).

    The model is put in eval mode (and left there: extraction is for frozen upstreams). Frames at or past
    `lengths[b]` are zero.
    """
    model.eval()
    lengths = lengths.to(codes.device).long()
    inputs = codes.float() if codes.is_floating_point() else codes.long()  # audio (B, S) for the baselines
    layers, _ = model(inputs, lengths)  # [L + 1] x (B, T, D)
    keep = (torch.arange(layers[0].shape[1], device=codes.device)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
    return [h.float() * keep for h in layers], lengths


class SummedCodebooks(nn.Module):
    """The codec's quantized latent: codes `(B, K, T)` -> sum over k of the codebook vectors `(B, T, D_codec)`."""

    offsets: Tensor

    def __init__(self, vectors: Tensor) -> None:
        super().__init__()
        self.table = vectors.float().reshape(-1, vectors.shape[-1])  # (K*V, D)
        self.register_buffer("offsets", torch.arange(vectors.shape[0]) * vectors.shape[1], persistent=False)  # (K,)

    def forward(self, codes: Tensor) -> Tensor:
        b, k, t = codes.shape
        idx = (codes.long() + self.offsets[None, :, None]).transpose(1, 2).reshape(b * t, k)  # (B*T, K)
        return F.embedding_bag(idx, self.table, mode="sum").view(b, t, -1)  # (B, T, D)


class Spectral(nn.Module):
    """MFCC or fbank of each row's audio: audio `(B, S)`, lengths `(B,)` -> `(B, T, D)`, zero past each length."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.fn, self.dim = SPECTRAL[name]

    def forward(self, audio: Tensor, lengths: Tensor) -> Tensor:
        out = audio.new_zeros(audio.shape[0], int(lengths.max()) if len(lengths) else 0, self.dim)  # (B, T, D)
        for b, n in enumerate(lengths.tolist()):
            out[b, :n] = self.fn(audio[b, : n * 320], n)  # (T_b, D): the row's own samples only
        return out


class FeatureSource:
    """An upstream: inputs `(B, K, T)` codes or `(B, S)` audio, lengths `(B,)` -> `[num_layers] x (B, T, dim)`."""

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        key: str,
        meta: dict[str, Any],
        num_layers: int,
        dim: int | None,
        build: Callable[[Tensor | None], nn.Module],
        layer: int = 0,
    ) -> None:
        self.kind, self.name, self.key, self.meta = kind, name, key, meta
        self.num_layers, self.dim, self.layer = num_layers, dim, layer
        self._build = build
        self.module: nn.Module | None = None
        self.frontend = str(meta.get("frontend") or meta.get("config", {}).get("model", {}).get("frontend", "codec"))
        self.reads = "audio" if kind in SPECTRAL or (kind != "codec" and self.frontend in AUDIO_FRONTENDS) else "codes"
        self.max_batch_frames = {"waveform": WAVEFORM_BATCH_FRAMES}.get(self.frontend, 10**12)
        if self.reads == "audio":
            self.max_batch_frames = min(self.max_batch_frames, AUDIO_BATCH_FRAMES)

    @property
    def framewise(self) -> bool:
        """Each frame's features depend on that frame alone (no context): batching cannot change them."""
        return self.kind == "codec" or self.kind in SPECTRAL

    def prepare(self, codebook_vectors: Tensor | None) -> None:
        """Build the module from the codec's `(K, V, D_codec)` codebook vectors (kept by every token store; None
        for audio inputs)."""
        if self.module is None:
            vectors = None if codebook_vectors is None else codebook_vectors.float()
            self.module = self._build(vectors).eval()
            if self.dim is None and vectors is not None:
                self.dim = int(vectors.shape[-1])

    @torch.no_grad()
    def __call__(self, inputs: Tensor, lengths: Tensor) -> list[Tensor]:
        """codes `(B, K, T)` or audio `(B, S)`, lengths `(B,)` -> `[num_layers] x (B, T, dim)` float32, zero past
        each length."""
        if self.module is None:
            raise Codec2VecError(f"feature source {self.name}: call prepare(codebook_vectors) first")
        if self.kind == "codec" or self.kind in SPECTRAL:
            t = inputs.shape[-1] if self.kind == "codec" else int(lengths.max()) if len(lengths) else 0
            keep = (torch.arange(t)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
            out = self.module(inputs) if self.kind == "codec" else self.module(inputs, lengths)
            return [out.float() * keep]  # (B, T, D)
        layers, _ = extract(self.module, inputs, lengths)  # type: ignore[arg-type]
        return layers

    def features(
        self, inputs: Inputs, ids: Sequence[str], *, layers: Sequence[int] | None = None, batch_frames: int = 20_000
    ) -> Iterator[tuple[str, Tensor]]:
        """`(id, (T, n, D))` float32 for every id: the `layers` (default `[self.layer]`) stacked, in batches of
        at most `batch_frames` padded frames; in length order, or the order of `ids` for a frame-wise source."""
        self.prepare(inputs.codebook_vectors())
        chosen = [self.layer] if layers is None else list(layers)
        order = list(ids) if self.framewise else sorted(ids, key=inputs.num_frames)
        for batch in length_batches(order, inputs.num_frames, min(batch_frames, self.max_batch_frames)):
            x, lengths = inputs.batch(batch)  # (B, K, T) | (B, S), (B,)
            out = self(x, lengths)
            h = torch.stack([out[i] for i in chosen], dim=2)  # (B, T, n, D)
            for b, uid in enumerate(batch):
                yield uid, h[b, : int(lengths[b])]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "key": self.key, "num_layers": self.num_layers, "dim": self.dim}


def length_batches(ids: Sequence[str], frames: Callable[[str], int], batch_frames: int) -> Iterator[list[str]]:
    """Consecutive groups of ids with (count x longest) <= batch_frames (at least one each); ids sorted by length
    make the newest the group's longest."""
    group: list[str] = []
    longest = 0
    for uid in ids:
        n = max(int(frames(uid)), 1)
        if group and (len(group) + 1) * max(longest, n) > batch_frames:
            yield group
            group, longest = [], 0
        group.append(uid)
        longest = max(longest, n)
    if group:
        yield group


def _encoder_like(meta: dict[str, Any], vectors: Tensor | None, seed: int | None) -> Codec2VecEncoder:
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


def checkpoint_source(ckpt: str | Path, layer: int | None = None) -> FeatureSource:
    """Every layer of a pre-trained checkpoint; `layer` (default the middle one) is what one-layer readers take."""
    model, meta = load_model(ckpt)
    num_layers = int(model.config.num_layers)
    layer = num_layers // 2 if layer is None else layer
    if not 0 <= layer <= num_layers:
        raise ConfigError(f"{ckpt}:{layer}: layer {layer} is outside the checkpoint's 0..{num_layers}")
    key = "ckpt-" + str(meta.get("files", {}).get("model.safetensors", digest(str(resolve(ckpt)))))[:16]
    return FeatureSource(
        kind="pretrained",
        name=str(ckpt),
        key=key,
        meta=meta,
        num_layers=num_layers + 1,
        dim=int(model.config.dim),
        build=lambda _vectors: model,
        layer=layer,
    )


def codec_source(codec: dict[str, Any], meta: dict[str, Any] | None = None) -> FeatureSource:
    """The codec's summed codebook vectors (its quantized latent), one layer; `codec` is a store's or a
    checkpoint's codec description (`name`, `config_hash`, ...)."""
    return FeatureSource(
        kind="codec",
        name="codec",
        key=f"codec-{codec['config_hash']}",
        meta=meta if meta is not None else {"codec": codec},
        num_layers=1,
        dim=None,
        build=lambda vectors: SummedCodebooks(_need(vectors, "codec")),
    )


def spectral_source(name: str) -> FeatureSource:
    """HuBERT's MFCC (`mfcc`) or MelHuBERT's fbank (`fbank`) of the audio on the 50 Hz grid, one layer."""
    return FeatureSource(
        kind=name,
        name=name,
        key=name,
        meta={},
        num_layers=1,
        dim=SPECTRAL[name][1],
        build=lambda _vectors: Spectral(name),
    )


def _need(vectors: Tensor | None, what: str) -> Tensor:
    if vectors is None:
        raise ConfigError(f"feature source {what!r} reads codes: audio inputs have no codebook vectors")
    return vectors


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
    if kind == "codec":
        return codec_source(meta["codec"], meta)
    model_cfg = meta["config"]["model"]
    return FeatureSource(
        kind="random",
        name="random",
        key=f"random-{digest(model_cfg, meta['codec']['config_hash'], seed)}",
        meta=meta,
        num_layers=int(model_cfg["num_layers"]) + 1,
        dim=int(model_cfg["dim"]),
        build=lambda vectors: _encoder_like(meta, vectors, seed),
        layer=int(model_cfg["num_layers"]) // 2,
    )


def parse_source(spec: str, codec: dict[str, Any]) -> FeatureSource:
    """k-means' `--source`: `codec` (the codec described by `codec`), `mfcc`, `fbank`, `decoded-mfcc` or
    `CKPT[:LAYER]`."""
    if spec == "codec":
        return codec_source(codec)
    if spec in SPECTRAL:
        return spectral_source(spec)
    head, _, tail = spec.rpartition(":")
    if head and tail.isdigit():
        return checkpoint_source(head, int(tail))
    return checkpoint_source(spec)


__all__ = [
    "AUDIO_FRONTENDS",
    "KINDS",
    "SPECTRAL",
    "FeatureSource",
    "Inputs",
    "checkpoint_source",
    "codec_source",
    "digest",
    "extract",
    "feature_source",
    "length_batches",
    "parse_source",
    "spectral_source",
]
