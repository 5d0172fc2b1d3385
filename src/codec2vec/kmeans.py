"""K-means labels for the `clusters` target (HuBERT's iterative clustering), written into the token store.

HuBERT (Hsu et al. 2021) clusters MFCCs for round 1 and a middle layer of the round-1 model for round 2, with
scikit-learn MiniBatchKMeans fitted on a ~10% sample and applied to everything. Codec2Vec has no MFCCs: round 1
clusters the codec's quantized latent (sum of the stored codebook vectors, `(T, D_codec)` per utterance), later
rounds a layer of a checkpoint (`CKPT[:LAYER]`, default the middle layer).

Memory is bounded by the sample, never the corpus: utterances are streamed in a seeded random order and each
frame is kept with probability sample/total (capped at the sample size). The fit uses faiss when it is
importable (fast path), else scikit-learn MiniBatchKMeans. It is fitted once (on the utterances whose
`split_field` equals `fit_split` when given) and applied to every utterance, frame by frame, on the store's grid;
labelling streams too (`StreamedLabels`: labels are computed while the store writes them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec2vec.errors import ConfigError


@dataclass
class KMeansOptions:
    """`codec2vec kmeans` settings."""

    source: str = "codec"  # "codec" or "CKPT[:LAYER]"
    clusters: int = 100
    sample_frames: int = 200_000
    name: str = "km"
    split_field: str | None = None  # entry field naming the split (in `extra` or the entry itself)
    fit_split: str = "train"
    seed: int = 0
    backend: str = "auto"  # auto | faiss | sklearn
    batch_frames: int = 20_000  # frames per forward pass for a checkpoint source
    max_iter: int = 100


class FeatureSource:
    """Frame features of stored codes: the codec's quantized latent, or one layer of a checkpoint's encoder."""

    def __init__(self, store: Any, source: str = "codec") -> None:
        self.store = store
        self.source = source
        self.layer: int | None = None
        self.encoder = None
        if source == "codec":
            cb = store.codebook_vectors().float()  # (K, V, D)
            self.table = cb.reshape(-1, cb.shape[-1])  # (K*V, D)
            self.offsets = torch.arange(cb.shape[0]) * cb.shape[1]  # (K,)
            self.dim = int(cb.shape[-1])
            return
        path, layer = source, None
        head, _, tail = source.rpartition(":")
        if head and tail.isdigit():
            path, layer = head, int(tail)
        from codec2vec.checkpoint import load_model

        self.encoder, meta = load_model(path)
        num_layers = self.encoder.config.num_layers
        self.layer = num_layers // 2 if layer is None else layer
        if not 0 <= self.layer <= num_layers:
            raise ConfigError(f"--source {source}: layer {self.layer} is outside 0..{num_layers}")
        if self.encoder.num_codebooks != store.codec.num_codebooks:
            raise ConfigError(
                f"--source {source}: checkpoint expects K={self.encoder.num_codebooks} codebooks, "
                f"the store has K={store.codec.num_codebooks}"
            )
        self.dim = int(self.encoder.config.dim)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "layer": self.layer, "dim": self.dim}

    @torch.no_grad()
    def features(self, ids: Sequence[str], batch_frames: int = 20_000) -> Iterator[tuple[str, Tensor]]:
        """Yield `(id, (T, D) float32)` for `ids` (in that order for the codec source; by length otherwise)."""
        if self.encoder is None:
            for uid in ids:
                codes = self.store[uid]  # (K, T)
                idx = (codes + self.offsets[:, None]).t()  # (T, K)
                yield uid, F.embedding_bag(idx, self.table, mode="sum")  # (T, D)
            return
        group: list[str] = []
        for uid in sorted(ids, key=self.store.num_frames):  # ascending: the newest is the group's longest
            if group and (len(group) + 1) * self.store.num_frames(uid) > batch_frames:
                yield from self._forward(group)
                group = []
            group.append(uid)
        if group:
            yield from self._forward(group)

    def _forward(self, ids: list[str]) -> Iterator[tuple[str, Tensor]]:
        k = self.store.codec.num_codebooks
        lengths = torch.tensor([self.store.num_frames(u) for u in ids])  # (B,)
        codes = torch.zeros(len(ids), k, int(lengths.max()), dtype=torch.long)  # (B, K, T)
        for b, uid in enumerate(ids):
            codes[b, :, : lengths[b]] = self.store[uid]
        layers, _ = self.encoder(codes, lengths)
        h = layers[self.layer].float()  # (B, T, D)
        for b, uid in enumerate(ids):
            yield uid, h[b, : lengths[b]]


def sample_frames(
    source: FeatureSource, ids: Sequence[str], num_frames: int, *, seed: int = 0, batch_frames: int = 20_000
) -> np.ndarray:
    """About `num_frames` frames `(N, D)` float32 drawn uniformly from `ids` (never more than `num_frames`)."""
    rng = np.random.default_rng(seed)
    ids = [ids[i] for i in rng.permutation(len(ids))]
    total = sum(source.store.num_frames(u) for u in ids)
    p = min(1.0, num_frames / max(1, total))
    out = np.empty((min(num_frames, total), source.dim), dtype=np.float32)
    n = 0
    for _, x in source.features(ids, batch_frames):
        keep = np.flatnonzero(rng.random(x.shape[0]) < p)[: out.shape[0] - n]
        out[n : n + len(keep)] = x[torch.from_numpy(keep)].numpy()
        n += len(keep)
        if n >= out.shape[0]:
            break
    return out[:n]


def _kmeans_plusplus(x: np.ndarray, clusters: int, seed: int, sample: int = 100_000) -> np.ndarray:
    """k-means++ seeds `(C, D)` from at most `sample` frames (sklearn's implementation)."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    pick = x if x.shape[0] <= sample else x[rng.choice(x.shape[0], sample, replace=False)]
    centers, _ = kmeans_plusplus(pick, clusters, random_state=seed)
    return np.ascontiguousarray(centers, dtype=np.float32)


def fit_kmeans(
    x: np.ndarray, clusters: int, *, seed: int = 0, backend: str = "auto", max_iter: int = 100
) -> tuple[np.ndarray, str]:
    """Fit k-means on `(N, D)` frames -> centroids `(C, D)` float32 and the backend used."""
    if x.shape[0] < clusters:
        raise ConfigError(f"kmeans: {x.shape[0]} sampled frames are fewer than --clusters {clusters}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend in ("auto", "faiss"):
        try:
            import faiss  # type: ignore[import-not-found]
        except ImportError:
            if backend == "faiss":
                raise ConfigError(
                    "kmeans: --backend faiss, but faiss is not installed (pip install faiss-cpu)"
                ) from None
        else:
            per = max(256, -(-x.shape[0] // clusters))  # use the whole sample (faiss subsamples to 256/centroid)
            km = faiss.Kmeans(
                x.shape[1], clusters, niter=max_iter, seed=seed, nredo=1, verbose=False, max_points_per_centroid=per
            )
            # faiss starts from random points and often merges clusters; start from k-means++ as sklearn does
            km.train(x, init_centroids=_kmeans_plusplus(x, clusters, seed))
            return np.asarray(km.centroids, dtype=np.float32), "faiss"
    if backend not in ("auto", "sklearn", "faiss"):
        raise ConfigError(f"kmeans: unknown --backend {backend!r}; choose auto, faiss or sklearn")
    from sklearn.cluster import MiniBatchKMeans

    # HuBERT's settings (simple_kmeans/learn_kmeans.py), fewer restarts.
    km = MiniBatchKMeans(
        n_clusters=clusters,
        init="k-means++",
        max_iter=max_iter,
        batch_size=10_000,
        tol=0.0,
        max_no_improvement=100,
        n_init=3,
        reassignment_ratio=0.0,
        random_state=seed,
        compute_labels=False,
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32), "sklearn"


def assign(x: Tensor, centroids: Tensor, chunk: int = 8192) -> Tensor:
    """Nearest centroid (L2) of each frame: `(T, D)`, `(C, D)` -> `(T,)` long."""
    c2 = (centroids * centroids).sum(-1)  # (C,)
    out = [(c2[None, :] - 2 * part @ centroids.t()).argmin(-1) for part in x.split(chunk)]  # (t, C) -> (t,)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


class StreamedLabels(Mapping[str, Tensor]):
    """id -> nearest-centroid labels `(T,)`, computed while `items()` is iterated (once, in feature order), so
    labelling a corpus holds one batch of features at a time, not every utterance's labels. Counts the frames
    per cluster as it goes (`.counts`)."""

    def __init__(
        self, source: FeatureSource, ids: Sequence[str], centroids: Tensor, *, batch_frames: int, progress: bool = False
    ) -> None:
        self.source, self.ids, self.centroids = source, list(ids), centroids
        self.batch_frames, self.progress = batch_frames, progress
        self.counts = torch.zeros(centroids.shape[0], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __getitem__(self, uid: str) -> Tensor:
        ((_, feats),) = self.source.features([uid], self.batch_frames)
        return assign(feats, self.centroids)

    def items(self) -> Iterator[tuple[str, Tensor]]:  # type: ignore[override]
        for i, (uid, feats) in enumerate(self.source.features(self.ids, self.batch_frames)):
            lab = assign(feats, self.centroids)  # (T,)
            self.counts += torch.bincount(lab, minlength=self.centroids.shape[0])
            if (i + 1) % 200 == 0:
                _note(self.progress, f"kmeans: labelled {i + 1}/{len(self.ids)} utterances")
            yield uid, lab


def _split_of(entry: dict[str, Any], field: str) -> Any:
    extra = entry.get("extra") or {}
    return extra.get(field, entry.get(field))


def run_kmeans(store_path: str, options: KMeansOptions, *, progress: bool = False) -> dict[str, Any]:
    """Fit on a sample (of the `fit_split` utterances), label every utterance, `store.write_labels(name, ...)`."""
    from codec2vec.store import TokenStore
    from codec2vec.store.labels import check_label_name

    o = options
    check_label_name(o.name)  # before the fit, not after it
    if o.clusters < 1 or o.sample_frames < 1:
        raise ConfigError(f"kmeans: --clusters ({o.clusters}) and --sample-frames ({o.sample_frames}) must be >= 1")
    store = TokenStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise ConfigError(f"kmeans: store {store_path} holds no utterances")
    fit_ids = ids
    if o.split_field:
        fit_ids = [u for u in ids if str(_split_of(store.entry(u), o.split_field)) == o.fit_split]
        if not fit_ids:
            raise ConfigError(f"kmeans: no utterance in {store_path} has {o.split_field}={o.fit_split!r}")
    source = FeatureSource(store, o.source)
    _note(progress, f"kmeans: sampling up to {o.sample_frames} frames from {len(fit_ids)} utterances ({o.source})")
    x = sample_frames(source, fit_ids, o.sample_frames, seed=o.seed, batch_frames=o.batch_frames)
    _note(progress, f"kmeans: fitting {o.clusters} clusters on {x.shape[0]} x {x.shape[1]} frames")
    centroids, backend = fit_kmeans(x, o.clusters, seed=o.seed, backend=o.backend, max_iter=o.max_iter)
    c = torch.from_numpy(centroids)  # (C, D)
    labels = StreamedLabels(source, ids, c, batch_frames=o.batch_frames, progress=progress)
    info = {
        **source.describe(),
        "clusters": o.clusters,
        "sample_frames": int(x.shape[0]),
        "backend": backend,
        "fit_utterances": len(fit_ids),
        "split_field": o.split_field,
        "fit_split": o.fit_split,
        "seed": o.seed,
    }
    store.write_labels(o.name, labels, o.clusters, info)  # streams: one utterance's labels at a time
    used = int((labels.counts > 0).sum())
    _note(
        progress,
        f"kmeans: wrote label set {o.name!r} ({len(ids)} utterances, {used}/{o.clusters} "
        f"clusters used) into {store_path}",
    )
    return {**info, "name": o.name, "utterances": len(ids), "frames": int(labels.counts.sum()), "clusters_used": used}


def _note(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


__all__ = ["FeatureSource", "KMeansOptions", "StreamedLabels", "assign", "fit_kmeans", "run_kmeans", "sample_frames"]
