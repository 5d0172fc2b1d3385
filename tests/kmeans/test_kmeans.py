"""k-means labels: blob recovery, bounded sampling, the codec-latent source, splits, the CLI, a checkpoint source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.common.errors import StoreError
from codec2vec.features.inputs import store_source
from codec2vec.kmeans import KMeansOptions, assign, fit_kmeans, run_kmeans, sample_frames
from codec2vec.store import TokenStore
from conftest import fake_info, make_audio_store, make_store, store_from_codes, tiny_checkpoint

V = 8


def _blobs(n: int = 3000, k: int = 6, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 20
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming the clusters."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("which", ["sklearn", "faiss"])
def test_fit_recovers_well_separated_blobs(which: str) -> None:
    if which == "faiss":
        pytest.importorskip("faiss", reason="faiss-cpu is the optional fast path (the 'cluster' extra)")
    x, y = _blobs()
    centroids, backend = fit_kmeans(x, 6, seed=0, backend=which)
    assert centroids.shape == (6, 5) and backend == which
    pred = assign(torch.from_numpy(x), torch.from_numpy(centroids)).numpy()
    assert _same_partition(pred, y)


def _store(root: Path, n_utts: int = 12) -> TokenStore:
    """K=2, V=8 codes; level 0 rows are 8 far-apart points, level 1 rows are tiny: the quantized latent forms
    8 blobs named by the level-0 code."""
    g = torch.Generator().manual_seed(0)
    cb = torch.zeros(2, V, 4)
    cb[0] = torch.randn(V, 4, generator=g) * 10
    cb[1] = torch.randn(V, 4, generator=g) * 0.1
    items = (
        (f"u{i:02d}", torch.randint(0, V, (2, 30 + 7 * i), generator=g), {"split": "train" if i % 3 else "dev"})
        for i in range(n_utts)
    )
    return store_from_codes(root / "store", fake_info(2, V), cb, items)


def test_sampling_is_bounded_and_seeded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    src, inputs = store_source(store, "codec")
    x = sample_frames(src, inputs, store.ids(), 100, seed=1)
    assert 60 <= x.shape[0] <= 100 and x.shape[1] == 4
    np.testing.assert_array_equal(x, sample_frames(src, inputs, store.ids(), 100, seed=1))
    total = sum(store.num_frames(u) for u in store.ids())
    assert sample_frames(src, inputs, store.ids(), 10**9).shape[0] == total  # asking for more returns everything once


def test_codec_source_labels_follow_the_latent_and_fit_only_on_train(tmp_path: Path) -> None:
    store = _store(tmp_path)
    summary = run_kmeans(
        str(tmp_path / "store"),
        KMeansOptions(clusters=V, sample_frames=2000, name="km", split_field="split", backend="sklearn"),
    )
    assert summary["fit_utterances"] == 8 and summary["utterances"] == 12
    store = TokenStore.open(tmp_path / "store")
    labels = store.labels("km")
    assert labels.num_classes == V and labels.info["source"] == "codec"
    ours = np.concatenate([labels[u].numpy() for u in store.ids()])
    level0 = np.concatenate([store[u][0].numpy() for u in store.ids()])
    assert _same_partition(ours, level0)  # each cluster is exactly one level-0 code


def test_cli_writes_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main

    _store(tmp_path)
    rc = main(
        ["kmeans", str(tmp_path / "store"), "--clusters", "4", "--sample-frames", "500", "--name", "k4", "--json"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "k4" and out["clusters"] == 4
    assert "k4" in TokenStore.open(tmp_path / "store").label_names()
    assert (
        main(["kmeans", str(tmp_path / "store"), "--clusters", "4", "--split-field", "split", "--fit-split", "nope"])
        == 2
    )  # a clear error, not a traceback


def test_checkpoint_layer_source(tmp_path: Path) -> None:
    """Round 2: cluster a layer of a saved encoder."""
    from codec2vec.pretrain.checkpoint import load_model, save_checkpoint
    from codec2vec.pretrain.config import config_to_dict, load_config

    store = _store(tmp_path, n_utts=4)
    cfg = load_config(None, [f"data.store={tmp_path / 'store'}", "model.preset=tiny"])
    from codec2vec.model import Codec2VecEncoder

    torch.manual_seed(0)
    enc = Codec2VecEncoder(
        config=cfg.model, num_codebooks=2, codebook_size=V, codebook_vectors=store.codebook_vectors()
    )
    weights = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    ckpt = save_checkpoint(
        tmp_path / "ckpt",
        weights=weights,
        state={},
        meta={"config": config_to_dict(cfg), "codec": store.codec.to_dict(), "step": 0},
    )
    loaded, _ = load_model(ckpt)
    src, inputs = store_source(store, f"{ckpt}:2")
    assert src.layer == 2 and src.dim == cfg.model.dim
    feats = dict(src.features(inputs, store.ids(), batch_frames=80))
    uid = store.ids()[1]
    with torch.no_grad():
        ref, _ = loaded(store[uid][None], torch.tensor([store.num_frames(uid)]))
    torch.testing.assert_close(feats[uid][:, 0], ref[2][0], atol=1e-4, rtol=1e-4)
    summary = run_kmeans(
        str(tmp_path / "store"), KMeansOptions(source=str(ckpt), clusters=5, name="km2", backend="sklearn")
    )
    assert summary["layer"] == cfg.model.num_layers // 2
    assert len(TokenStore.open(tmp_path / "store").labels("km2")) == 4


def test_labels_must_cover_the_training_utterances(tmp_path: Path) -> None:
    from codec2vec.common.errors import StoreError
    from codec2vec.pretrain.data import CropLoader

    store = _store(tmp_path, 6)
    run_kmeans(str(tmp_path / "store"), KMeansOptions(clusters=4, name="km", backend="sklearn"))
    with store.writer() as w:  # appended after k-means: not labelled
        w.add("late", np.zeros((2, 30), dtype=int), seconds=0.6)
    store = TokenStore.open(tmp_path / "store")
    with pytest.raises(StoreError, match="covers 6 of 7 utterances"):
        CropLoader(store, store.ids(), batch_frames=40, crop_frames=20, label_names=["km"])


def test_kmeans_cli_rejects_zero_clusters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main

    _store(tmp_path, 2)
    assert main(["kmeans", str(tmp_path / "store"), "--clusters", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--clusters" in err and len(err.splitlines()) == 1


def test_sample_is_chosen_by_utterance_before_any_model_runs(tmp_path: Path) -> None:
    from codec2vec.kmeans import sample_budget, sample_utterances

    store = _store(tmp_path, 12)
    src, inputs = store_source(store, "codec")
    seen: list[str] = []
    batch = inputs.batch

    def spy(ids):  # what a checkpoint would be run on
        seen.extend(ids)
        return batch(ids)

    inputs.batch = spy  # type: ignore[method-assign]
    x = sample_frames(src, inputs, store.ids(), 150, seed=3)
    chosen = sample_utterances(store, store.ids(), 150, seed=3)
    assert x.shape[0] == 150 and seen == chosen and len(chosen) < 12
    assert sum(store.num_frames(u) for u in chosen[:-1]) < 150 <= sum(store.num_frames(u) for u in chosen)
    # the budget scales with the clusters and is capped by memory
    assert sample_budget(KMeansOptions(clusters=500), 64) == 500_000
    assert sample_budget(KMeansOptions(clusters=500, sample_frames=1234), 64) == 1234
    assert sample_budget(KMeansOptions(clusters=10_000, max_sample_mb=100), 768) == 100 * 2**20 // (4 * 768)


def test_more_inits_never_worse_and_inertia_and_use_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codec2vec.cli import main
    from codec2vec.kmeans import inertia

    pytest.importorskip("faiss", reason="faiss-cpu is the optional fast path (the 'cluster' extra)")
    x, _ = _blobs(n=2000, k=12, seed=4)
    one, _ = fit_kmeans(x, 12, seed=0, backend="faiss", n_init=1)
    three, _ = fit_kmeans(x, 12, seed=0, backend="faiss", n_init=3)  # starts 0, 1, 2: keeps the best
    assert inertia(x, three)[0] <= inertia(x, one)[0] * (1 + 1e-6)
    total, counts = inertia(x, three)
    d2 = ((x[:, None, :] - three[None]) ** 2).sum(-1)  # (N, C)
    assert total == pytest.approx(float(d2.min(1).sum()), rel=1e-4)
    assert counts.sum() == 2000 and np.array_equal(counts, np.bincount(d2.argmin(1), minlength=12))
    _store(tmp_path)
    assert main(["kmeans", str(tmp_path / "store"), "--clusters", str(V), "--name", "k8", "--backend", "sklearn"]) == 0
    err = capsys.readouterr().err
    assert "inertia" in err and f"cluster use {V}/{V} (100.0%)" in err
    info = TokenStore.open(tmp_path / "store").labels("k8").info
    assert info["clusters_used"] == V and info["cluster_use"] == 1.0 and info["inertia"] > 0
    assert info["sample_clusters_used"] == V and info["n_init"] == 3 and 1 < info["cluster_perplexity"] <= V


def test_kmeans_checks_the_label_name_before_fitting(tmp_path: Path, monkeypatch) -> None:
    import codec2vec.kmeans as km

    s = make_store(tmp_path / "s", {"a": 30})

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the name")

    monkeypatch.setattr(km, "fit_kmeans", no_fit)
    monkeypatch.setattr(km, "sample_frames", no_fit)
    with pytest.raises(StoreError, match="label set name"):
        km.run_kmeans(str(s.root), km.KMeansOptions(name="../evil", clusters=2))


@pytest.mark.slow
def test_kmeans_on_a_waveform_checkpoint_runs_the_cnn_in_small_batches(tmp_path: Path, monkeypatch) -> None:
    from codec2vec import kmeans
    from codec2vec.features.sources import FeatureSource

    store = make_audio_store(tmp_path / "corpus", n=12)  # 12 utterances of 40-160 frames: > 1024 in all
    ckpt = tiny_checkpoint(tmp_path / "ckpt", "waveform")
    padded: list[int] = []
    forward = FeatureSource.__call__

    def spy(self, inputs, lengths):  # every batch the CNN runs on
        padded.append(len(lengths) * int(lengths.max()))
        return forward(self, inputs, lengths)

    monkeypatch.setattr(FeatureSource, "__call__", spy)
    opts = kmeans.KMeansOptions(source=f"{ckpt}:2", clusters=4, frames_per_cluster=200, n_init=1, name="w2")
    kmeans.run_kmeans(str(store), opts)
    assert padded and max(padded) <= 1024  # 20k padded frames peaked at 7.8 GB
    assert "w2" in TokenStore.open(store).label_names()
