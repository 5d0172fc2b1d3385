"""Blocked rANS coding (`store/rans.py`) and rANS stores: exact round trips and crops at every block boundary,
compression within a fraction of a percent of the order-0 entropy, crops that decode only their blocks, corrupt
data refused (never garbage), models that travel (JSON, pickling), and Huffman stores still read."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec2vec.common.errors import StoreError
from codec2vec.corpora.audio import load_audio
from codec2vec.store import TokenStore, rans
from codec2vec.store.container import read_container_index, write_container
from codec2vec.store.layout import file_record
from codec2vec.store.rans import VERSION, RansModel, decode, encode, precision_for
from codec2vec.store.writer import ShardWriter, record_file
from conftest import fake_info, legacy_huffman_payload, store_from_codes


def _sample(rng: np.random.Generator, k: int, v: int, t: int, skew: float) -> np.ndarray:
    """(K, T) codes; skew 0 is uniform, larger is more Zipf-like, each level with its own symbol order."""
    p = 1.0 / np.arange(1, v + 1) ** skew
    p /= p.sum()
    return np.stack([rng.permutation(v)[rng.choice(v, size=t, p=p)] for _ in range(k)]).reshape(k, t)


def _entropy_bits(codes: np.ndarray) -> float:
    """Order-0 entropy of (K, T) codes, summed over levels and frames."""
    total = 0.0
    for row in codes:
        p = np.bincount(row) / row.size
        p = p[p > 0]
        total += float(-(p * np.log2(p)).sum()) * row.size
    return total


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 48),
    v=st.sampled_from([2, 16, 1024]),
    t=st.integers(0, 200),
    block_bits=st.sampled_from([1, 300, 6144]),
    skew=st.sampled_from([0.0, 1.0, 2.5]),
    pairs=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_and_crops_at_every_block_boundary(
    k: int, v: int, t: int, block_bits: int, skew: float, pairs: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pairs = pairs and v <= 16
    model = RansModel.fit([_sample(rng, k, v, 100, skew)], v, block_bits=block_bits, pairs=pairs)  # unseen symbols
    assert model.pairs == pairs and model.freqs.shape == ((k + 1) // 2 if pairs else k, v * v if pairs else v)
    codes = _sample(rng, k, v, t, 2.5 - skew)  # coded on a differently skewed source
    data = encode(codes, model)
    assert (data == b"") == (t == 0)
    out = decode(data, model, k, t)
    assert out.dtype == np.int64 and out.shape == (k, t) and np.array_equal(out, codes)
    b = model.block_frames
    edges = sorted({e for j in range(0, t + b, b) for e in (j - 1, j, j + 1) if 0 <= e <= t})
    for start in edges:
        for stop in [e for e in edges if e >= start][:4] + [t]:
            assert np.array_equal(decode(np.frombuffer(data, np.uint8), model, k, t, start, stop), codes[:, start:stop])


@pytest.mark.parametrize("t", [0, 1, 15, 16, 17, 33])
def test_lengths_around_the_block(t: int) -> None:
    rng = np.random.default_rng(t)
    model = RansModel.fit([_sample(rng, 30, 16, 500, 1.0)], 16, block_bits=1)  # the shortest blocks: 16 frames
    assert model.block_frames == 16
    codes = _sample(rng, 30, 16, t, 1.0)
    data = encode(codes, model)
    assert np.array_equal(decode(data, model, 30, t), codes)
    assert decode(data, model, 30, t, t, t).shape == (30, 0)


def test_within_one_percent_of_the_order0_entropy() -> None:
    rng = np.random.default_rng(1)
    codes = _sample(rng, 30, 16, 20_000, 1.0)  # ~3.5 bits per code, like Lyra's
    model = RansModel.fit([codes], 16)
    bits = len(encode(codes, model)) * 8
    assert bits < 1.01 * _entropy_bits(codes)
    assert 30 * 16 * 8 < model.block_frames * 30 * 3.4 < 2 * rans.BLOCK_BITS  # blocks of ~BLOCK_BITS bits


def test_pairs_of_dependent_levels_go_below_the_order0_entropy() -> None:
    """Residual quantizers' neighbouring levels are dependent: coding pairs beats the levels' order-0 entropy, and
    `fit_smallest` takes whichever of pairs and levels is smaller, tables included."""
    rng = np.random.default_rng(8)
    first = _sample(rng, 6, 16, 30_000, 1.0)
    second = (first + rng.choice(4, size=first.shape, p=[0.7, 0.1, 0.1, 0.1])) % 16  # depends on its neighbour
    codes = np.stack([first, second], axis=1).reshape(12, -1)  # levels 2i and 2i + 1 dependent
    model = rans.fit_smallest([codes], 16)
    assert model.pairs
    data = encode(codes, model)
    assert len(data) * 8 < 0.8 * _entropy_bits(codes)
    assert np.array_equal(decode(data, model, 12, codes.shape[1], 1000, 1250), codes[:, 1000:1250])
    for frames in (20, 200, 2000):  # the choice is the smaller all told (codes and table)
        part = codes[:, :frames]
        sizes = {
            p: len(encode(part, m)) + rans.model_bytes(m)
            for p in (False, True)
            for m in [RansModel.fit([part], 16, pairs=p)]
        }
        assert sizes[rans.fit_smallest([part], 16).pairs] <= 1.01 * min(sizes.values())


def test_a_crop_decodes_only_the_blocks_it_overlaps() -> None:
    """Block 3 is damaged: crops before it still decode (it was never touched); a crop into it raises."""
    rng = np.random.default_rng(2)
    codes = _sample(rng, 8, 16, 400, 1.0)
    model = RansModel.fit([codes], 16, block_bits=1)
    data = bytearray(encode(codes, model))
    nb = -(-400 // model.block_frames)
    sizes = [model.predicted_words(model.block_frames)] * nb
    header = np.frombuffer(bytes(data[:nb]), np.uint8).astype(np.int64)
    assert (header < 0x80).all()  # one byte per block here
    sizes = np.asarray(sizes) + np.where(header % 2 == 0, header >> 1, -((header + 1) >> 1))
    block3 = nb + 2 * int(sizes[:3].sum())  # 16-bit words
    data[block3 + 2] ^= 0x5A
    assert np.array_equal(decode(bytes(data), model, 8, 400, 0, 3 * 16), codes[:, : 3 * 16])
    with pytest.raises(ValueError, match="block 3"):
        decode(bytes(data), model, 8, 400, 40, 60)


def test_corrupt_or_mismatched_data_is_refused() -> None:
    rng = np.random.default_rng(3)
    codes = _sample(rng, 4, 16, 300, 1.0)
    model = RansModel.fit([codes], 16, block_bits=1)
    data = encode(codes, model)
    for bad in (data[:-1], data + b"\0", data[:10], b"\xff" * len(data)):
        with pytest.raises(ValueError):
            decode(bad, model, 4, 300)
    for frames in (299, 301, 0):
        with pytest.raises(ValueError):
            decode(data, model, 4, frames)
    with pytest.raises(ValueError):
        decode(data, model, 5, 300)
    with pytest.raises(ValueError):
        decode(data, model, 4, 300, 10, 301)
    with pytest.raises(ValueError):
        encode(codes + 16, model)
    with pytest.raises(ValueError):
        RansModel.fit([codes], 1 << 15)


def _reference_decode(data: bytes, model: RansModel, t: int) -> np.ndarray:
    """A plain-Python rANS decoder of a whole record, written from the format's description alone (zigzag
    varint header, blocks of little-endian 16-bit words starting with two 32-bit states high word first, frame i
    of a row on state i % 2, 16-bit renormalisation): the compiled kernels must agree with it."""
    freqs = [[int(f) for f in row] for row in model.freqs]
    cums = [[sum(row[:s]) for s in range(len(row))] for row in freqs]
    prec, b, low = model.precision, model.block_frames, 1 << 16
    nb, pos, lengths = -(-t // b), 0, []
    for j in range(nb):
        z, shift = 0, 0
        while True:
            z |= (data[pos] & 0x7F) << shift
            shift, pos = shift + 7, pos + 1
            if data[pos - 1] < 0x80:
                break
        d = z >> 1 if z % 2 == 0 else -((z + 1) >> 1)
        lengths.append(model.predicted_words(b if j < nb - 1 else t - (nb - 1) * b) + d)
    words = [int.from_bytes(data[i : i + 2], "little") for i in range(pos, len(data), 2)]
    assert len(words) == sum(lengths)
    rows, w = [], 0
    for j in range(nb):
        n = min(b, t - j * b)
        block = words[w : w + lengths[j]]
        w += lengths[j]
        x, p = [block[0] << 16 | block[1], block[2] << 16 | block[3]], 4
        out = np.zeros((len(freqs), n), dtype=np.int64)
        for g in range(len(freqs)):
            for i in range(n):
                slot = x[i % 2] & ((1 << prec) - 1)
                s = max(c for c in range(len(freqs[g])) if cums[g][c] <= slot)
                x[i % 2] = freqs[g][s] * (x[i % 2] >> prec) + slot - cums[g][s]
                if x[i % 2] < low:
                    x[i % 2], p = x[i % 2] << 16 | block[p], p + 1
                out[g, i] = s
        assert x == [low, low] and p == len(block)
        rows.append(out)
    return model.split(np.concatenate(rows, axis=1))


@pytest.mark.parametrize(("k", "v", "t", "pairs"), [(3, 16, 70, True), (4, 16, 50, False), (2, 1024, 40, False)])
def test_kernels_agree_with_a_plain_python_reference(k: int, v: int, t: int, pairs: bool) -> None:
    rng = np.random.default_rng(k * t)
    model = RansModel.fit([_sample(rng, k, v, 400, 1.5)], v, block_bits=1, pairs=pairs)
    codes = _sample(rng, k, v, t, 1.0)
    data = encode(codes, model)
    assert np.array_equal(_reference_decode(data, model, t), codes)
    assert np.array_equal(decode(data, model, k, t), codes)


def test_corrupt_blocks_are_refused_with_the_block_named() -> None:
    """Each kind of damage the kernel checks: a state below its range, a block that does not end in the initial
    state at its last word, lengths beyond the record, a block that reads past its end."""
    rng = np.random.default_rng(11)
    codes = _sample(rng, 6, 16, 64, 1.0)
    model = RansModel.fit([codes], 16, block_bits=1)  # blocks of 16 frames: 4 blocks, one header byte each
    data = encode(codes, model)
    nb, head = 4, 4
    assert model.block_frames == 16 and all(x < 0x80 for x in data[:nb])
    zero_state = bytearray(data)
    zero_state[head : head + 4] = b"\0\0\0\0"  # block 0's first state: below 2**16
    flipped = bytearray(data)
    flipped[-3] ^= 0x40  # the last block's words
    longer = bytearray(data)
    longer[1] = (longer[1] + 2) % 0x80  # block 1 two words longer than the record holds
    cases = {
        "block 0 does not end": zero_state,
        "block 3": flipped,
        "the header says": longer,
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            decode(bytes(bad), model, 6, 64)
    # lengths that move a word from block 1 to block 2: the record's size agrees, the blocks do not decode
    moved = bytearray(data)
    z1, z2 = moved[1], moved[2]
    d1, d2 = (z1 >> 1 if z1 % 2 == 0 else -((z1 + 1) >> 1)) - 1, (z2 >> 1 if z2 % 2 == 0 else -((z2 + 1) >> 1)) + 1
    moved[1], moved[2] = (2 * d1 if d1 >= 0 else -2 * d1 - 1), (2 * d2 if d2 >= 0 else -2 * d2 - 1)
    with pytest.raises(ValueError, match="block 1"):
        decode(bytes(moved), model, 6, 64, 16, 20)
    assert np.array_equal(decode(bytes(moved), model, 6, 64, 0, 16), codes[:, :16])  # block 0 untouched


def test_numba_works_without_a_writable_cache(tmp_path: Path) -> None:
    """A cache folder that cannot be made (under a file: refused even to root): the kernels still compile and
    decode, with no warning printed."""
    import os
    import subprocess
    import sys

    locked = tmp_path / "a-file"
    locked.write_text("")
    script = (
        "import numpy as np; from codec2vec.store.rans import RansModel, encode, decode\n"
        "c = np.arange(60).reshape(3, 20) % 16; m = RansModel.fit([c], 16)\n"
        "assert (decode(encode(c, m), m, 3, 20) == c).all(); print('ok')"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(locked / "numba")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    assert "Warning" not in run.stderr, run.stderr


def test_model_travels_exactly_and_names_its_format_version() -> None:
    rng = np.random.default_rng(4)
    model = RansModel.fit([_sample(rng, 12, 1024, 3000, 1.0)], 1024)
    assert (model.freqs.sum(axis=1) == 1 << model.precision).all() and model.freqs.min() >= 1
    assert model.precision == precision_for(1024) == 14 and precision_for(16) == precision_for(256) == 12
    doc = json.loads(json.dumps(model.to_dict()))
    assert doc["version"] == VERSION
    back = RansModel.from_dict(doc)
    assert back == model
    codes = _sample(rng, 12, 1024, 200, 1.0)
    assert np.array_equal(decode(encode(codes, model), pickle.loads(pickle.dumps(back)), 12, 200), codes)
    for broken in (
        {**doc, "logp8": ["zz"]},
        {**doc, "version": VERSION + 1},
        {**doc, "version": 1},
        {k: v for k, v in doc.items() if k != "version"},
    ):
        with pytest.raises(ValueError, match="malformed"):
            RansModel.from_dict(broken)


def test_store_reads_crops_and_verifies(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = {f"u{i}": _sample(rng, 46, 16, int(rng.integers(0, 700)), 1.2) for i in range(12)}
    store = store_from_codes(
        tmp_path / "s", fake_info(46, 16), torch.randn(46, 16, 4), [(u, c, {}) for u, c in data.items()]
    )
    index = read_container_index(store.shard_paths()[0])
    assert index["coding"] == "rans" and index["rans"]["block_frames"] % 16 == 0
    b = index["rans"]["block_frames"]
    for uid, codes in data.items():
        t = codes.shape[1]
        assert np.array_equal(store[uid].numpy(), codes)
        for start in range(0, t, b):
            stop = min(t, start + 250)
            assert np.array_equal(store.read(uid, start, stop).numpy(), codes[:, start:stop])
    assert store.verify() == []
    assert store.info()["codes_bytes"] * 8 < 1.02 * _entropy_bits(np.concatenate(list(data.values()), axis=1))


def test_damaged_rans_record_and_model_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    items = [(f"s{i}", _sample(rng, 46, 16, 300, 1.2), {}) for i in range(3)]
    store = store_from_codes(tmp_path / "s", fake_info(46, 16), torch.randn(46, 16, 4), items)
    shard = store.shard_paths()[0]
    loc = store._packed.locs["s1"]
    blob = bytearray(shard.read_bytes())
    blob[loc.offset + loc.nbytes // 2] ^= 0x10
    shard.write_bytes(bytes(blob))
    damaged = TokenStore.open(tmp_path / "s")
    with pytest.raises(StoreError, match=r"000000\.c2s: utterance 's1' fails its checksum"):
        damaged.read("s1", 0, 20)
    assert np.array_equal(damaged.read("s2", 0, 20).numpy(), items[2][1][:, :20])
    assert any("s1" in p for p in damaged.verify())
    # A record whose bytes check but do not decode (here: decoded with a wrong model) is refused, not garbage.
    other = RansModel.fit([_sample(rng, 46, 16, 300, 0.0)], 16)
    damaged._packed.models[0] = other
    with pytest.raises(StoreError, match="utterance 's0' cannot be decoded"):
        damaged["s0"]


def test_a_model_of_another_format_version_is_refused_and_verify_names_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    items = [(f"s{i}", _sample(rng, 46, 16, 300, 1.2), {}) for i in range(3)]
    store = store_from_codes(tmp_path / "s", fake_info(46, 16), torch.randn(46, 16, 4), items)
    shard = store.shard_paths()[0]
    index = read_container_index(shard)
    payload = shard.read_bytes()[: index["payload_bytes"]]
    index["rans"]["version"] = VERSION + 1  # as if written by a newer codec2vec
    write_container(shard, [payload], {k: v for k, v in index.items() if not k.startswith("payload_")})
    record_file(tmp_path / "s", "shards", shard, file_record(shard, 3))  # a sound file, recorded as such
    with pytest.raises(StoreError, match=r"000000\.c2s: .*format version"):
        TokenStore.open(tmp_path / "s")
    problems = TokenStore.open(tmp_path / "s", check=False).verify()
    assert any("format version" in p and "000000.c2s" in p for p in problems)


def test_old_huffman_and_packed_stores_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    items = [(f"u{i}", _sample(rng, 46, 16, int(rng.integers(1, 400)), 1.2), {}) for i in range(6)]
    for coding in ("huffman", "packed"):
        with monkeypatch.context() as m:
            if coding == "huffman":  # as an earlier version wrote it
                m.setattr(ShardWriter, "_payload", legacy_huffman_payload)
            store = store_from_codes(
                tmp_path / coding,
                fake_info(46, 16),
                torch.randn(46, 16, 4),
                items,
                coding="auto" if coding == "huffman" else coding,
            )
        assert read_container_index(store.shard_paths()[0])["coding"] == coding
        for uid, codes, _ in items:
            assert np.array_equal(store.read(uid, 1, codes.shape[1]).numpy(), codes[:, 1:])
        assert store.verify() == []
    # a store that has Huffman shards takes rANS shards for new utterances ("auto") and reads both
    store = TokenStore.open(tmp_path / "huffman")
    store.update_meta({**store.meta, "coding": "auto"})
    with store.writer() as w:
        w.add("new", items[0][1], seconds=1.0)
    store = TokenStore.open(tmp_path / "huffman")
    assert [read_container_index(p)["coding"] for p in store.shard_paths()] == ["huffman", "rans"]
    assert np.array_equal(store["new"].numpy(), items[0][1]) and np.array_equal(store["u1"].numpy(), items[1][1])
    assert store.verify() == []


def test_real_lyra_codes_near_their_entropy(lyra_codec, speech_dir) -> None:
    wav = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    codes = lyra_codec.encode_one(wav)  # (46, T)
    k, t = codes.shape
    model = RansModel.fit([codes], lyra_codec.codebook_size)
    data = encode(codes, model)
    assert np.array_equal(decode(data, model, k, t), codes)
    assert np.array_equal(decode(data, model, k, t, 37, 37 + 100), codes[:, 37:137])
    assert len(data) * 8 < 1.03 * _entropy_bits(codes)  # one short utterance: the model itself is not counted
