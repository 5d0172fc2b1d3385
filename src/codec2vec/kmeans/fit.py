"""The k-means fit itself: k-means++ starts and Lloyd iterations with faiss when it is importable (`n_init`
starts, the lowest inertia kept), else scikit-learn MiniBatchKMeans; the inertia of a sample, and nearest-centroid
assignment. Frames in `(N, D)` float32, centroids `(C, D)`."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import ConfigError


def inertia(x: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> tuple[float, np.ndarray]:
    """Sum of squared distances of `(N, D)` frames to their nearest of `(C, D)` centroids, and the frames per
    cluster `(C,)` (float64 sums)."""
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))  # (C, D)
    c2 = (c * c).sum(-1)  # (C,)
    total, counts = 0.0, torch.zeros(c.shape[0], dtype=torch.long)
    for part in torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).split(chunk):
        d = (part * part).sum(-1, keepdim=True) + c2[None, :] - 2 * part @ c.t()  # (n, C)
        best, idx = d.min(-1)
        total += float(best.clamp(min=0).double().sum())
        counts += torch.bincount(idx, minlength=c.shape[0])
    return total, counts.numpy()


def _kmeans_plusplus(x: np.ndarray, clusters: int, seed: int, sample: int = 100_000) -> np.ndarray:
    """k-means++ seeds `(C, D)` from at most `sample` frames (sklearn's implementation)."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    pick = x if x.shape[0] <= sample else x[rng.choice(x.shape[0], sample, replace=False)]
    centers, _ = kmeans_plusplus(pick, clusters, random_state=seed)
    return np.ascontiguousarray(centers, dtype=np.float32)


def fit_kmeans(
    x: np.ndarray, clusters: int, *, seed: int = 0, backend: str = "auto", max_iter: int = 100, n_init: int = 3
) -> tuple[np.ndarray, str]:
    """Fit k-means on `(N, D)` frames with `n_init` k-means++ starts -> the centroids `(C, D)` float32 of the
    lowest-inertia fit and the backend used."""
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
            best: tuple[float, np.ndarray] | None = None
            for r in range(max(1, n_init)):  # faiss's nredo would restart from the same given seeds: loop here
                km = faiss.Kmeans(
                    x.shape[1], clusters, niter=max_iter, seed=seed + r, verbose=False, max_points_per_centroid=per
                )
                # faiss starts from random points and often merges clusters; start from k-means++ as sklearn does
                km.train(x, init_centroids=_kmeans_plusplus(x, clusters, seed + r))
                centroids = np.asarray(km.centroids, dtype=np.float32).copy()
                obj = inertia(x, centroids)[0]  # of the final centroids (faiss's obj lags one update)
                if best is None or obj < best[0]:
                    best = (obj, centroids)
            assert best is not None
            return best[1], "faiss"
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
        n_init=max(1, n_init),
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
