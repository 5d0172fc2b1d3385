"""Static Huffman coding of codec codes (`entropy.py`): exact round trips, valid prefix codes, optimal
length-limited lengths, compression near the entropy, and real Lyra codes below their 4 bits/code."""

from __future__ import annotations

import heapq
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec2vec.corpora.audio import load_audio
from codec2vec.store.entropy import HuffmanModel, _package_merge, decode, encode


def _sample(rng: np.random.Generator, k: int, v: int, t: int, skew: float) -> np.ndarray:
    """(K, T) codes; skew 0 is uniform, larger is more Zipf-like, each level with its own symbol order."""
    p = 1.0 / np.arange(1, v + 1) ** skew
    p /= p.sum()
    return np.stack([rng.permutation(v)[rng.choice(v, size=t, p=p)] for _ in range(k)]).reshape(k, t)


def _entropy_bits(x: np.ndarray) -> float:
    p = np.bincount(x) / x.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 48),
    v=st.sampled_from([2, 16, 1024, 2048]),
    t=st.integers(0, 300),
    skew=st.sampled_from([0.0, 1.0, 2.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_is_exact(k: int, v: int, t: int, skew: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = HuffmanModel.fit([_sample(rng, k, v, 200, skew)], v)  # fitted on other data: unseen symbols too
    codes = _sample(rng, k, v, t, 2.5 - skew)  # and coded on a differently skewed source
    data = encode(codes, model)
    out = decode(data, model, k, t)
    assert out.dtype == np.int64 and out.shape == (k, t)
    assert np.array_equal(out, codes)
    assert np.array_equal(decode(np.frombuffer(data, dtype=np.uint8), model, k, t), codes)


@pytest.mark.parametrize("k, v, t", [(1, 16, 0), (1, 16, 1), (46, 16, 1), (3, 1, 5), (1, 2, 1), (2, 2048, 1)])
def test_edge_cases(k: int, v: int, t: int) -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, v, size=(k, t))
    model = HuffmanModel.fit([codes], v)
    data = encode(codes, model)
    assert (data == b"") == (t == 0)
    assert np.array_equal(decode(data, model, k, t), codes)


def test_streams_far_from_the_predicted_size() -> None:
    """The header holds each stream's size as a deviation from a prediction; big ones, both signs, work."""
    rng = np.random.default_rng(5)
    model = HuffmanModel.fit([_sample(rng, 2, 16, 5000, 2.0)], 16)
    lens = model.lengths.astype(np.int64)
    codes = np.stack([np.full(20_000, lens[0].argmax()), np.full(20_000, lens[1].argmin())])  # longest, shortest
    data = encode(codes, model)
    assert np.array_equal(decode(data, model, 2, 20_000), codes)


def test_every_symbol_has_a_code_even_unseen() -> None:
    model = HuffmanModel.fit([np.zeros((2, 1000), dtype=np.int64)], 1024)
    everything = np.tile(np.arange(1024), (2, 1))
    assert np.array_equal(decode(encode(everything, model), model, 2, 1024), everything)
    assert model.lengths[0, 0] == 1 and model.lengths.max() <= 15


@pytest.mark.parametrize("v, max_len", [(2, 1), (16, 4), (16, 6), (16, 15), (1024, 11), (1024, 15), (2048, 16)])
def test_canonical_codes_are_prefix_free(v: int, max_len: int) -> None:
    rng = np.random.default_rng(v + max_len)
    model = HuffmanModel.fit([_sample(rng, 3, v, 5000, 1.5), _sample(rng, 3, v, 10, 0.0)], v, max_len=max_len)
    assert model.lengths.max() <= max_len
    for lens, words in zip(model.lengths.astype(np.int64), model.codewords):
        assert (words < (np.int64(1) << lens)).all()
        lo = words << (16 - lens)  # each codeword as an interval of 16-bit windows: disjoint = prefix-free
        hi = lo + (np.int64(1) << (16 - lens))
        order = np.argsort(lo)
        assert (hi[order][:-1] <= lo[order][1:]).all()
        assert (2.0**-lens).sum() <= 1.0


def _huffman_cost(w: list[int]) -> int:
    heap = list(w)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


def test_package_merge_is_optimal() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):  # without a binding limit (a Huffman tree is at most n - 1 deep): Huffman's cost
        w = rng.integers(1, 10_000, size=int(rng.integers(2, 300))) ** 2
        lens = _package_merge(w, w.size - 1)
        assert int((lens * w).sum()) == _huffman_cost(w.tolist()) and (2.0**-lens).sum() == 1.0
    for _ in range(30):  # with a binding limit: the best of all length vectors, by brute force
        n, limit = int(rng.integers(2, 7)), 3
        w = rng.integers(1, 1000, size=n) ** 3
        if n > 2**limit:
            continue
        best = min(
            sum(int(a) * b for a, b in zip(w, ls))
            for ls in itertools.product(range(1, limit + 1), repeat=n)
            if sum(2.0**-x for x in ls) <= 1.0
        )
        lens = _package_merge(w, limit)
        assert lens.max() <= limit and int((lens * w).sum()) == best


def test_compression_near_entropy_on_a_skewed_source() -> None:
    rng = np.random.default_rng(2)
    p = 0.75 ** np.arange(16)
    codes = rng.choice(16, size=(1, 20_000), p=p / p.sum())
    model = HuffmanModel.fit([codes], 16)
    bits = len(encode(codes, model)) * 8 / codes.size
    assert bits <= _entropy_bits(codes[0]) + 0.1
    assert bits < 3.5  # well below the 4-bit nominal width


def test_serialisation_is_compact_and_exact() -> None:
    rng = np.random.default_rng(3)
    model = HuffmanModel.fit([_sample(rng, 12, 1024, 3000, 1.0)], 1024)
    text = json.dumps(model.to_list())
    assert len(text) < 12 * 1024 + 100
    assert HuffmanModel.from_list(json.loads(text)) == model


def test_bad_input_and_corrupt_data_are_refused() -> None:
    rng = np.random.default_rng(4)
    codes = _sample(rng, 4, 16, 100, 1.0)
    model = HuffmanModel.fit([codes], 16)
    data = encode(codes, model)
    with pytest.raises(ValueError):
        encode(codes + 16, model)
    with pytest.raises(ValueError):
        encode(codes[:3], model)
    with pytest.raises(ValueError):
        HuffmanModel.fit([codes], 1024, max_len=9)
    with pytest.raises(ValueError):
        HuffmanModel.fit([codes], 16, max_len=17)
    with pytest.raises(ValueError):
        HuffmanModel(np.ones((1, 3), dtype=np.uint8))  # three 1-bit codes: not a prefix code
    for bad in (data[:-1], data + b"\0", data[:10]):
        with pytest.raises(ValueError):
            decode(bad, model, 4, 100)
    for frames in (99, 101):
        with pytest.raises(ValueError):
            decode(data, model, 4, frames)


def test_real_lyra_codes_go_below_four_bits(lyra_codec, speech_dir) -> None:
    wav = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    codes = lyra_codec.encode_one(wav)  # (46, T)
    k, t = codes.shape
    model = HuffmanModel.fit([codes], lyra_codec.codebook_size)
    data = encode(codes, model)
    assert np.array_equal(decode(data, model, k, t), codes)
    assert len(data) * 8 / codes.size < 4.0
