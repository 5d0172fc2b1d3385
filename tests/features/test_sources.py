"""Feature sources: one class and one batching loop for every reader; k-means and the probe cache read the same
frames of a checkpoint layer and of the codec's embeddings."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

from codec2vec.features.cache import FeatureDir
from codec2vec.features.inputs import StoreCodes, store_source
from codec2vec.features.sources import checkpoint_source, feature_source, length_batches
from codec2vec.pretrain.checkpoint import load_model
from conftest import make_store

PKG = Path(__file__).resolve().parents[2] / "src" / "codec2vec"


def test_one_feature_source_class_in_the_package() -> None:
    found = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef) and node.name == "FeatureSource"
    ]
    assert found == ["features/sources.py"]


def test_length_batches_bound_the_padded_frames_and_keep_every_id_once() -> None:
    rng = np.random.default_rng(0)
    frames = {f"u{i}": int(n) for i, n in enumerate(rng.integers(0, 300, 60))}
    frames["long"] = 900  # longer than a batch: alone
    for ids in (sorted(frames, key=frames.__getitem__), list(frames)):  # length order, and the given order
        batches = list(length_batches(ids, frames.__getitem__, 1000))
        assert [u for b in batches for u in b] == ids
        for b in batches:
            assert len(b) == 1 or len(b) * max(max(frames[u], 1) for u in b) <= 1000
    assert list(length_batches([], frames.__getitem__, 1000)) == []


def _checkpoint(tmp_path: Path, store) -> Path:
    from codec2vec.model import Codec2VecEncoder
    from codec2vec.pretrain.checkpoint import save_checkpoint
    from codec2vec.pretrain.config import config_to_dict, load_config

    cfg = load_config(None, [f"data.store={store.root}", "model.preset=tiny"])
    torch.manual_seed(0)
    enc = Codec2VecEncoder(
        config=cfg.model, num_codebooks=4, codebook_size=16, codebook_vectors=store.codebook_vectors()
    )
    weights = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    meta = {"config": config_to_dict(cfg), "codec": store.codec.to_dict(), "step": 0}
    return save_checkpoint(tmp_path / "ckpt", weights=weights, state={}, meta=meta)


def test_kmeans_and_the_probe_cache_read_the_same_frames(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", {f"u{i}": 20 + 9 * i for i in range(7)})
    ckpt = _checkpoint(tmp_path, store)
    km_source, km_inputs = store_source(store, f"{ckpt}:1")  # what `codec2vec kmeans --source CKPT:1` reads
    km = dict(km_source.features(km_inputs, store.ids(), batch_frames=150))  # (T, 1, D), batched and padded
    fdir = FeatureDir.open_or_create(tmp_path / "f", key="k", layers=[1], dim=km_source.dim, describe={})
    assert fdir.fill(checkpoint_source(ckpt), StoreCodes(store), store.ids(), batch_frames=64) == len(store.ids())
    model, _ = load_model(ckpt)
    for uid in store.ids():
        codes = store[uid][None]  # (1, K, T)
        with torch.no_grad():
            alone = model(codes, torch.tensor([codes.shape[-1]]))[0][1][0]  # (T, D): layer 1, the utterance alone
        torch.testing.assert_close(km[uid][:, 0], alone, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(fdir.get(uid)[:, 0].astype(np.float32), alone.numpy(), atol=2e-2, rtol=1e-2)

    codec_km, codec_inputs = store_source(store, "codec")  # k-means round 1: the codec latent
    codec_probe = feature_source("codec", ckpt)  # the probe's codec reference
    assert codec_km.key == codec_probe.key
    codec_probe.prepare(store.codebook_vectors())
    codes, lengths = StoreCodes(store).batch(store.ids())
    (probe_h,) = codec_probe(codes, lengths)  # (B, T, D_codec)
    for b, (uid, h) in enumerate(codec_km.features(codec_inputs, store.ids())):
        assert uid == store.ids()[b]  # a frame-wise source keeps the order it is given
        torch.testing.assert_close(h[:, 0], probe_h[b, : int(lengths[b])])
