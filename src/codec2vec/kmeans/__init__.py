"""K-means labels for the `clusters` target (HuBERT's iterative clustering), written into the token store.

HuBERT (Hsu et al. 2021) clusters MFCCs for round 1 and a middle layer of the round-1 model for round 2, with
scikit-learn MiniBatchKMeans fitted on a ~10% sample and applied to everything. Codec2Vec has no MFCCs: round 1
clusters the codec's quantized latent (sum of the stored codebook vectors, `(T, D_codec)` per utterance), later
rounds a layer of a checkpoint (`CKPT[:LAYER]`, default the middle layer). The continuous-input baselines
(`model.frontend: waveform | mel`) cluster HuBERT's MFCCs for round 1 (`--source mfcc`: the audio the store was
made from, `(T, 78)` on the store's 50 Hz grid, frontends.mfcc; MelHuBERT's log-mel with `--source fbank`,
`(T, 80)`, frontends.fbank_frames) and a layer of their own checkpoint later. `--source decoded-mfcc` computes the
same MFCCs from the audio decoded from the tokens by the store's codec (`features/decoded.py`: tokens only, no source audio).

The sample is drawn by utterances, as HuBERT's `sample_pct`: whole utterances in a seeded random order until a
frame budget is reached, and only those utterances go through a checkpoint (the sample is chosen before any
model runs). The budget scales with the clusters (`frames_per_cluster`, 1000 by default: 500k frames for 500
clusters; HuBERT fits on ~10% of LibriSpeech, ~17M frames at 50 Hz) and is capped by memory (`max_sample_mb`
of float32 features). The fit uses faiss when it is importable (fast path, `n_init` k-means++ starts, the
lowest inertia kept), else scikit-learn MiniBatchKMeans with `n_init` starts. It reports the inertia (sum of
squared distances of the sample to its centroid, and per frame) and cluster use (clusters with at least one
frame, in the sample and over the corpus, and the perplexity of the corpus histogram), printed and stored in
the label set's info. It is fitted once (on the utterances whose `split_field` equals `fit_split` when given)
and applied to every utterance, frame by frame, on the store's grid; labelling streams too (`StreamedLabels`:
labels are computed while the store writes them). The features are read through the feature layer
(`features.inputs.store_source`: the `--source` and the store's codes or audio that feed it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import ConfigError
from codec2vec.common.options import option
from codec2vec.common.progress import Progress, heartbeat
from codec2vec.features.inputs import store_source
from codec2vec.features.sources import FeatureSource, Inputs
from codec2vec.kmeans.fit import assign, fit_kmeans, inertia
from codec2vec.store import TokenStore
from codec2vec.store.labels import check_label_name


class Frames(Protocol):
    """Anything that knows each utterance's frame count (a token store, a feature source's inputs)."""

    def num_frames(self, uid: str) -> int: ...


@dataclass
class KMeansOptions:
    """`codec2vec kmeans` settings (its flags, made from these fields by `cli/flags.py`)."""

    # "codec", "mfcc" / "fbank" (audio baselines' round 1), "decoded-mfcc" or "CKPT[:LAYER]"
    source: str = option(
        "codec",
        help="'codec' (quantized latent), 'mfcc' / 'fbank' (the store's audio; baselines' round 1), 'decoded-mfcc' "
        "(MFCCs of the audio decoded from the tokens) or CKPT[:LAYER]",
    )
    # --source mfcc / audio-baseline checkpoints: manifest (id/path); "" = the store's sources
    audio: str = option("", help="manifest (id/path) of the store's audio; default: its sources")
    clusters: int = option(100)
    # 0: clusters x frames_per_cluster, capped by max_sample_mb
    sample_frames: int = option(0, help="frames sampled for the fit (0: clusters x --frames-per-cluster)")
    frames_per_cluster: int = option(1000, help="sample budget per cluster when not given")
    max_sample_mb: int = option(4096, help="memory cap of the sampled features")  # float32 features
    # k-means++ initialisations; the fit with the lowest inertia is kept
    n_init: int = option(3, help="k-means++ initialisations; the lowest inertia is kept")
    name: str = option("km", help="label set name (targets.clusters.labels)")
    # entry field naming the split (in `extra` or the entry itself)
    split_field: str | None = option(None, help="entry field naming the split; fit only on --fit-split")
    fit_split: str = option("train")
    seed: int = option(0)
    backend: str = option("auto", choices=("auto", "faiss", "sklearn"))
    batch_frames: int = option(20_000, help="frames per forward pass for a checkpoint source")
    max_iter: int = option(100, help="k-means iterations at most")


def sample_utterances(store: Frames, ids: Sequence[str], num_frames: int, *, seed: int = 0) -> list[str]:
    """Whole utterances in a seeded random order until they hold at least `num_frames` frames (or all of them)."""
    rng = np.random.default_rng(seed)
    chosen, total = [], 0
    for i in rng.permutation(len(ids)):
        if total >= num_frames:
            break
        chosen.append(ids[i])
        total += int(store.num_frames(ids[i]))
    return chosen


def sample_frames(
    source: FeatureSource,
    inputs: Inputs,
    ids: Sequence[str],
    num_frames: int,
    *,
    seed: int = 0,
    batch_frames: int = 20_000,
    progress: bool = False,
) -> np.ndarray:
    """`min(num_frames, frames of ids)` frames `(N, D)` float32: the frames of utterances picked by
    `sample_utterances` (only those are run through a checkpoint), thinned at random to `num_frames`."""
    chosen = sample_utterances(inputs, ids, num_frames, seed=seed)
    total = sum(int(inputs.num_frames(u)) for u in chosen)
    out = np.empty((total, int(source.dim or 0)), dtype=np.float32)
    n = 0
    bar = Progress("kmeans: sampling", len(chosen), unit="utt", enabled=progress)
    for _, x in source.features(inputs, chosen, batch_frames=batch_frames):
        out[n : n + x.shape[0]] = x[:, 0].numpy()  # (T, D): the source's layer
        n += x.shape[0]
        bar.update(1, f"{n:,} frames")
    bar.close()
    if n > num_frames:  # the last utterance overshot the budget
        keep = np.sort(np.random.default_rng(seed + 1).choice(n, num_frames, replace=False))
        return out[keep]
    return out[:n]


def sample_budget(options: KMeansOptions, dim: int) -> int:
    """Frames to sample: `--sample-frames`, or clusters x frames_per_cluster; at most `max_sample_mb` of features."""
    want = options.sample_frames or options.clusters * options.frames_per_cluster
    return max(1, min(want, options.max_sample_mb * 2**20 // (4 * max(1, dim))))


class StreamedLabels(Mapping[str, Tensor]):
    """id -> nearest-centroid labels `(T,)`, computed while `items()` is iterated (once, in feature order), so
    labelling a corpus holds one batch of features at a time, not every utterance's labels. Counts the frames
    per cluster as it goes (`.counts`)."""

    def __init__(
        self,
        source: FeatureSource,
        inputs: Inputs,
        ids: Sequence[str],
        centroids: Tensor,
        *,
        batch_frames: int,
        progress: bool = False,
    ) -> None:
        self.source, self.inputs, self.ids, self.centroids = source, inputs, list(ids), centroids
        self.batch_frames, self.progress = batch_frames, progress
        self.counts = torch.zeros(centroids.shape[0], dtype=torch.long)
        self.info: dict[str, Any] | None = None  # gets clusters_used / cluster_use / cluster_perplexity at the end

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __getitem__(self, uid: str) -> Tensor:
        ((_, feats),) = self.source.features(self.inputs, [uid], batch_frames=self.batch_frames)
        return assign(feats[:, 0], self.centroids)

    def items(self) -> Iterator[tuple[str, Tensor]]:  # type: ignore[override]
        bar = Progress("kmeans: labelling", len(self.ids), unit="utt", enabled=self.progress)
        for uid, feats in self.source.features(self.inputs, self.ids, batch_frames=self.batch_frames):
            lab = assign(feats[:, 0], self.centroids)  # (T,)
            self.counts += torch.bincount(lab, minlength=self.centroids.shape[0])
            bar.update(1, f"{int(self.counts.sum()):,} frames")
            yield uid, lab
        bar.close()
        if self.info is not None:
            used = int((self.counts > 0).sum())
            p = self.counts.double() / max(1, int(self.counts.sum()))
            self.info["clusters_used"] = used
            self.info["cluster_use"] = used / len(self.counts)
            self.info["cluster_perplexity"] = float(torch.exp(-(p * p.clamp(min=1e-30).log()).sum()))


def _split_of(entry: dict[str, Any], field: str) -> Any:
    extra = entry.get("extra") or {}
    return extra.get(field, entry.get(field))


def run_kmeans(store_path: str, options: KMeansOptions, *, progress: bool = False) -> dict[str, Any]:
    """Fit on a sample (of the `fit_split` utterances), label every utterance, `store.write_labels(name, ...)`."""

    o = options
    check_label_name(o.name)  # before the fit, not after it
    if o.clusters < 1 or o.sample_frames < 0 or o.frames_per_cluster < 1 or o.n_init < 1:
        raise ConfigError(
            f"kmeans: --clusters ({o.clusters}), --frames-per-cluster ({o.frames_per_cluster}) and --n-init "
            f"({o.n_init}) must be >= 1, --sample-frames ({o.sample_frames}) >= 0"
        )
    store = TokenStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise ConfigError(f"kmeans: store {store_path} holds no utterances")
    fit_ids = ids
    if o.split_field:
        fit_ids = [u for u in ids if str(_split_of(store.entry(u), o.split_field)) == o.fit_split]
        if not fit_ids:
            raise ConfigError(f"kmeans: no utterance in {store_path} has {o.split_field}={o.fit_split!r}")
    source, inputs = store_source(store, o.source, o.audio)
    budget = sample_budget(o, int(source.dim or 0))
    _note(progress, f"kmeans: sampling up to {budget} frames by utterance from {len(fit_ids)} utterances ({o.source})")
    x = sample_frames(source, inputs, fit_ids, budget, seed=o.seed, batch_frames=o.batch_frames, progress=progress)
    _note(progress, f"kmeans: fitting {o.clusters} clusters on {x.shape[0]} x {x.shape[1]} frames, {o.n_init} init(s)")
    with heartbeat("kmeans: fitting", progress):  # a plain line every CODEC2VEC_PROGRESS_SECONDS in a log
        centroids, backend = fit_kmeans(
            x, o.clusters, seed=o.seed, backend=o.backend, max_iter=o.max_iter, n_init=o.n_init
        )
    total, sample_counts = inertia(x, centroids)
    sample_used = int((sample_counts > 0).sum())
    _note(
        progress,
        f"kmeans: inertia {total:.4g} ({total / max(1, x.shape[0]):.4g} per frame); "
        f"{sample_used}/{o.clusters} clusters used in the sample",
    )
    info: dict[str, Any] = {
        "source": o.source,
        "layer": source.layer if source.kind == "pretrained" else None,
        "dim": source.dim,
        "clusters": o.clusters,
        "sample_frames": int(x.shape[0]),
        "frames_per_cluster": x.shape[0] / o.clusters,
        "n_init": o.n_init,
        "backend": backend,
        "inertia": total,
        "inertia_per_frame": total / max(1, x.shape[0]),
        "sample_clusters_used": sample_used,
        "fit_utterances": len(fit_ids),
        "split_field": o.split_field,
        "fit_split": o.fit_split,
        "seed": o.seed,
    }
    labels = StreamedLabels(
        source, inputs, ids, torch.from_numpy(centroids), batch_frames=o.batch_frames, progress=progress
    )
    labels.info = info  # filled with the corpus cluster use once labelling ends, before the index is written
    store.write_labels(o.name, labels, o.clusters, info)  # streams: one utterance's labels at a time
    used = info["clusters_used"]
    _note(
        progress,
        f"kmeans: wrote label set {o.name!r} ({len(ids)} utterances); cluster use {used}/{o.clusters} "
        f"({100 * used / o.clusters:.1f}%), perplexity {info['cluster_perplexity']:.1f}; inertia "
        f"{info['inertia_per_frame']:.4g} per frame; into {store_path}",
    )
    return {**info, "name": o.name, "utterances": len(ids), "frames": int(labels.counts.sum())}


def _note(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


__all__ = [
    "KMeansOptions",
    "StreamedLabels",
    "assign",
    "fit_kmeans",
    "inertia",
    "run_kmeans",
    "sample_budget",
    "sample_frames",
    "sample_utterances",
]
