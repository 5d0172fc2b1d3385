"""Token store: exact round trips (property-based), bit-exact sizes, corruption detection, labels, merge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec2vec.codecs.base import CodecInfo
from codec2vec.common.errors import StoreError
from codec2vec.store import TokenStore, packing
from codec2vec.store.container import read_container_index
from codec2vec.store.merge import merge_stores
from conftest import fake_info


def _info(k: int = 46, v: int = 16, name: str = "lyra", cfg: dict | None = None) -> CodecInfo:
    return fake_info(k, v, name=name, config=cfg or {"k": k})


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 40), bits=st.integers(1, 16), t=st.integers(0, 40), seed=st.integers(0, 2**31))
def test_pack_unpack_round_trip(k: int, bits: int, t: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, 1 << bits, size=(k, t))
    raw = packing.pack(codes, bits)
    assert raw.dtype == np.uint8 and raw.size == t * packing.frame_bytes(k, bits)
    assert np.array_equal(packing.unpack(raw, k, bits), codes)


def test_exact_bit_width() -> None:
    assert packing.frame_bytes(46, packing.bits_for(16)) == 23  # Lyra: 46 x 4 bits
    assert packing.frame_bytes(12, packing.bits_for(1024)) == 15  # DAC-16k: 12 x 10 bits
    assert packing.frame_bytes(1, packing.bits_for(100)) == 1  # a label set of 100 clusters: 1 byte per frame
    assert packing.frame_bytes(2, packing.bits_for(1024)) == 3  # EnCodec at 1.5 kbps: 20 bits -> 3 bytes
    with pytest.raises(ValueError):
        packing.pack(np.array([[16]]), 4)


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 60), min_size=1, max_size=8),
    seed=st.integers(0, 2**31),
    k=st.integers(1, 12),
    v=st.sampled_from([2, 16, 1000, 1024, 2048]),
)
def test_store_round_trip(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], seed: int, k: int, v: int
) -> None:
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(seed)
    store = TokenStore.create(root / "s", _info(k, v), torch.randn(k, v, 3))
    data = {f"u{i}": rng.integers(0, v, size=(k, n)) for i, n in enumerate(lengths)}
    with store.writer() as w:
        for i, (uid, codes) in enumerate(data.items()):
            w.add(uid, codes, seconds=codes.shape[1] / 50)
            if i % 3 == 2:
                w.commit()
    again = TokenStore.open(root / "s")
    assert again.ids() == list(data)
    for uid, codes in data.items():
        got = again[uid]
        assert got.dtype == torch.long and tuple(got.shape) == codes.shape
        assert np.array_equal(got.numpy(), codes)
        if codes.shape[1] >= 3:
            assert np.array_equal(again.read(uid, 1, 3).numpy(), codes[:, 1:3])
    assert again.verify() == []
    assert torch.equal(again.codebook_vectors(), store.codebook_vectors())


def _small_store(root: Path, n: int = 6) -> tuple[TokenStore, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    store = TokenStore.create(root, _info(), torch.randn(46, 16, 8))
    data = {f"spk/u{i}": rng.integers(0, 16, size=(46, 50 + 10 * i)) for i in range(n)}
    with store.writer() as w:
        for uid, codes in data.items():
            w.add(uid, codes, seconds=codes.shape[1] / 50, source=f"/data/{uid}.wav", extra={"speaker": uid[:3]})
    return TokenStore.open(root), data


def test_flipped_byte_is_detected_and_named(tmp_path: Path) -> None:
    store, data = _small_store(tmp_path / "s")
    shard = next((tmp_path / "s" / "shards").glob("*.c2s"))
    victim = "spk/u2"
    idx = store._packed.locs[victim]
    blob = bytearray(shard.read_bytes())
    blob[idx.offset + 5] ^= 0x10
    shard.write_bytes(bytes(blob))
    damaged = TokenStore.open(tmp_path / "s")
    problems = damaged.verify()
    assert len(problems) == 1 and shard.name in problems[0] and victim in problems[0]
    with pytest.raises(StoreError, match="fails its checksum"):
        damaged[victim]
    with pytest.raises(StoreError, match="fails its checksum"):
        damaged.read(victim, 0, 2)  # a crop of a damaged utterance is refused too
    assert np.array_equal(damaged["spk/u1"].numpy(), data["spk/u1"])  # others still read


def test_damaged_index_names_the_shard(tmp_path: Path) -> None:
    _small_store(tmp_path / "s")
    shard = next((tmp_path / "s" / "shards").glob("*.c2s"))
    blob = bytearray(shard.read_bytes())
    blob[-50] ^= 0xFF  # inside the compressed index
    shard.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match=shard.name):
        TokenStore.open(tmp_path / "s")
    problems = TokenStore.open(tmp_path / "s", check=False).verify()
    assert any(shard.name in p for p in problems)


def test_writer_exception_commits_nothing(tmp_path: Path) -> None:
    store, _ = _small_store(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.add("new", np.zeros((46, 5), dtype=int), seconds=0.1)
            raise RuntimeError("crash")
    again = TokenStore.open(tmp_path / "s")
    assert "new" not in again and again.verify() == []
    assert not list((tmp_path / "s" / "shards").glob(".tmp-*"))


def test_duplicate_ids_refused(tmp_path: Path) -> None:
    store, _ = _small_store(tmp_path / "s")
    with pytest.raises(StoreError, match="already stored"):
        with store.writer() as w:
            w.add("spk/u0", np.zeros((46, 5), dtype=int), seconds=0.1)


def test_labels_on_the_frame_grid(tmp_path: Path) -> None:
    store, data = _small_store(tmp_path / "s")
    labels = {uid: torch.randint(0, 100, (codes.shape[1],)) for uid, codes in data.items()}
    store.write_labels("km100", labels, 100, {"source": "test"})
    ls = store.labels("km100")
    assert ls.num_classes == 100 and ls.info == {"source": "test"}
    for uid, lab in labels.items():
        assert torch.equal(ls[uid], lab)
    assert torch.equal(ls.read("spk/u3", 2, 7), labels["spk/u3"][2:7])
    with pytest.raises(StoreError, match="labels for"):
        store.write_labels("bad", {"spk/u0": torch.zeros(3, dtype=torch.long)}, 10)
    assert store.label_names() == ["km100"] and store.verify() == []


def test_info_figures(tmp_path: Path) -> None:
    store, data = _small_store(tmp_path / "s")
    info = store.info()
    frames = sum(c.shape[1] for c in data.values())
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert info["utterances"] == len(data) and info["frames"] == frames
    assert info["bytes"] == on_disk
    assert info["codes_bytes"] == frames * 23
    assert info["kbps"] == pytest.approx(on_disk * 8 / info["seconds"] / 1000)
    assert info["codes_kbps"] == pytest.approx(9.2)
    assert set(info["codec"]) >= {"name", "sample_rate", "frame_rate", "num_codebooks", "codebook_size"}
    assert store.entry("spk/u1")["extra"] == {"speaker": "spk"}


def test_merge(tmp_path: Path) -> None:
    a, da = _small_store(tmp_path / "a", 3)
    b = TokenStore.create(tmp_path / "b", _info(), a.codebook_vectors())
    with b.writer() as w:
        w.add("other", np.ones((46, 7), dtype=int), seconds=0.14)
    n = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    m = TokenStore.open(tmp_path / "m")
    assert n == 4 and set(m.ids()) == set(da) | {"other"} and m.verify() == []
    assert np.array_equal(m["spk/u1"].numpy(), da["spk/u1"])
    with pytest.raises(StoreError, match="both"):
        merge_stores([tmp_path / "a", tmp_path / "m"], tmp_path / "m2")
    TokenStore.create(tmp_path / "c", _info(cfg={"other": 1}), a.codebook_vectors())
    with pytest.raises(StoreError, match="cannot merge"):
        merge_stores([tmp_path / "a", tmp_path / "c"], tmp_path / "m3")


def test_meta_is_self_describing(tmp_path: Path) -> None:
    _small_store(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["bits_per_code"] == 4
    assert {"name", "config_hash", "sample_rate", "frame_rate", "num_codebooks", "codebook_size"} <= set(meta["codec"])


def test_low_rank_codebooks_are_stored_as_exact_factors(tmp_path: Path) -> None:
    """DAC-like tables (a small codebook projected to a wide latent, plus bias) are kept as factors."""
    g = torch.Generator().manual_seed(0)
    small, proj, bias = (
        torch.randn(3, 256, 6, generator=g),
        torch.randn(3, 6, 512, generator=g),
        torch.randn(3, 1, 512, generator=g),
    )
    table = small @ proj + bias  # (K, V, D), rank <= 7 per level
    store = TokenStore.create(tmp_path / "s", _info(3, 256), table)
    back = store.codebook_vectors()
    assert back.shape == table.shape
    assert torch.allclose(back, table, rtol=0, atol=1e-5 * table.abs().max().item())
    assert (tmp_path / "s" / "codebooks.safetensors").stat().st_size < table.numel() * 4 / 10
    full_rank = torch.randn(46, 16, 64, generator=g)  # Lyra-sized: stored as is, bit for bit
    other = TokenStore.create(tmp_path / "l", _info(), full_rank)
    assert torch.equal(other.codebook_vectors(), full_rank)


def _skewed(rng: np.random.Generator, k: int, v: int, t: int) -> np.ndarray:
    p = 1.0 / np.arange(1, v + 1) ** 1.2  # Zipf-like: well below log2(V) bits per code
    return rng.choice(v, size=(k, t), p=p / p.sum())


@pytest.mark.parametrize("v", [16, 1024])
def test_entropy_coded_shards_round_trip_and_are_smaller(tmp_path: Path, v: int) -> None:
    rng = np.random.default_rng(0)
    k = 46 if v == 16 else 12
    data = {f"u{i}": _skewed(rng, k, v, int(rng.integers(0, 300))) for i in range(20)}
    sizes = {}
    for coding in ("auto", "rans", "packed"):
        store = TokenStore.create(tmp_path / coding, _info(k, v), torch.randn(k, v, 4), coding=coding)
        with store.writer() as w:
            for uid, codes in data.items():
                w.add(uid, codes, seconds=codes.shape[1] / 50)
        store = TokenStore.open(tmp_path / coding)
        for uid, codes in data.items():
            assert np.array_equal(store[uid].numpy(), codes)
            if codes.shape[1] > 10:
                assert np.array_equal(store.read(uid, 3, 10).numpy(), codes[:, 3:10])
        assert store.verify() == []
        sizes[coding] = store.info()["codes_bytes"]
    assert sizes["auto"] == sizes["rans"] < 0.9 * sizes["packed"]
    for coding, written in (("auto", "rans"), ("rans", "rans"), ("packed", "packed")):
        assert read_container_index(next((tmp_path / coding / "shards").glob("*.c2s")))["coding"] == written


def test_huffman_is_no_longer_a_coding_for_new_stores(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="coding 'huffman': choose one of auto, packed, rans"):
        TokenStore.create(tmp_path / "h", _info(4, 16), torch.randn(4, 16, 4), coding="huffman")


def test_uniform_codes_stay_bit_packed_and_damage_in_coded_shards_is_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = TokenStore.create(tmp_path / "u", _info(), torch.randn(46, 16, 4))
    with store.writer() as w:
        w.add("flat", rng.integers(0, 16, (46, 500)), seconds=10)  # ~4 bits of entropy: coding cannot win
    assert TokenStore.open(tmp_path / "u").info()["codes_bytes"] == 500 * 23
    store = TokenStore.create(tmp_path / "s", _info(), torch.randn(46, 16, 4))
    with store.writer() as w:
        for i in range(3):
            w.add(f"s{i}", _skewed(rng, 46, 16, 200), seconds=4)
    shard = next((tmp_path / "s" / "shards").glob("*.c2s"))
    loc = TokenStore.open(tmp_path / "s")._packed.locs["s1"]
    blob = bytearray(shard.read_bytes())
    blob[loc.offset + loc.nbytes // 2] ^= 0x04
    shard.write_bytes(bytes(blob))
    damaged = TokenStore.open(tmp_path / "s")
    with pytest.raises(StoreError, match="fails its checksum"):
        damaged["s1"]
    assert any("s1" in p for p in damaged.verify())


def test_foreign_shards_and_edited_meta_are_refused(tmp_path: Path) -> None:
    _small_store(tmp_path / "a")
    other = TokenStore.create(tmp_path / "b", _info(cfg={"levels": 44}), torch.randn(46, 16, 8))
    with other.writer() as w:
        w.add("stranger", np.zeros((46, 9), dtype=int), seconds=0.2)
    foreign = next((tmp_path / "b" / "shards").glob("*.c2s"))
    planted = tmp_path / "a" / "shards" / "000099.c2s"
    planted.write_bytes(foreign.read_bytes())
    with pytest.raises(StoreError, match="000099.c2s: holds codes of codec config"):
        TokenStore.open(tmp_path / "a")
    assert any("000099.c2s" in p for p in TokenStore.open(tmp_path / "a", check=False).verify())
    planted.unlink()
    meta = tmp_path / "a" / "meta.json"
    meta.write_text(meta.read_text().replace('"num_codebooks": 46', '"num_codebooks": 45'))
    with pytest.raises(StoreError, match="meta.json: damaged"):
        TokenStore.open(tmp_path / "a")


def test_create_is_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / ".s.tmp-left-by-a-killed-create").mkdir()  # what a kill during create leaves: ignored
    (tmp_path / "s").mkdir()  # an empty folder may become a store
    TokenStore.create(tmp_path / "s", _info(), torch.randn(46, 16, 8))
    names = sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith("."))
    assert names == ["codebooks.safetensors", "contents.json", "meta.json", "shards"]
    bad = CodecInfo("lyra", 16000, 50.0, 46, 16, {"a": 1}, "not-its-hash")
    with pytest.raises(StoreError, match="does not match its hash"):
        TokenStore.create(tmp_path / "t", bad, torch.randn(46, 16, 8))
    assert not (tmp_path / "t").exists()


def test_long_utterances_are_packed_in_pieces_with_the_same_bytes(monkeypatch) -> None:
    from codec2vec.store import packing

    codes = np.random.default_rng(0).integers(0, 16, size=(46, 1000))
    whole = packing.pack(codes, 4)
    monkeypatch.setattr(packing, "PACK_FRAMES", 96)
    assert np.array_equal(packing.pack(codes, 4), whole)
    assert np.array_equal(packing.unpack(whole, 46, 4), codes)
