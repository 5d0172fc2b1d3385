"""Static per-level Huffman coding of codec codes: below the nominal bitrate, with fast vectorised reads.

Codec codes are close to uniform within a level but not quite (Lyra v2: ~3.79 bits of entropy per 4-bit
code, level 0: 3.13), and byte-oriented compressors (zlib, lzma, bz2) see no structure in bit-packed codes.
A static canonical Huffman code per level (per codebook), fitted once on a sample of the corpus, gets
within a few hundredths of a bit of each level's entropy and decodes with table lookups.

- `HuffmanModel.lengths (K, V) uint8`: the code length of every symbol of every level. Lengths are
  limited to `max_len` bits (<= 16) with package-merge (optimal under the limit), so decode tables stay
  `2**L` entries per level (L = the longest length in use). Every symbol in [0, V) has a code, seen or
  not (fit adds 1 to every count). Codewords are canonical, so the lengths are the whole model.
- `encode(codes (K, T), model) -> bytes`: level-major. The K levels are K independent bitstreams (MSB
  first), each padded to a whole byte, after a header of K zigzag varints in nibbles (3 bits + a
  continuation bit), padded to a byte: each stream's byte length minus the length predicted from T and
  the model (`_predicted_bytes`); usually 4-8 bits per level.
  T = 0 encodes to b"". K and T are not stored: the caller keeps them (as the store keeps frame counts).
- `decode(data, model, K, T) -> int64 (K, T)`: the max-length window at every bit position of all
  streams is turned into (symbol, next position) with one gather into the per-level tables; the K
  streams are then walked in lockstep, one `np.take` of K positions per frame. Memory is ~20 bytes per
  coded bit while decoding (fine for utterances; decode hours of audio in utterance-sized pieces).
  Corrupt data (an invalid codeword, a stream that does not end where its length says) raises ValueError.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from codec2vec.store.packing import check_codes

MAX_LEN_LIMIT = 16  # lengths fit one hex digit (length - 1) in `to_list`, and a table entry packs sym<<5 | len
_LEN_BITS = 5  # a table entry is `symbol << 5 | length`; length 0 marks an invalid window


def _package_merge(weights: np.ndarray, max_len: int) -> np.ndarray:
    """Optimal code lengths (int64, same order as `weights`) for positive weights under `max_len` bits.

    Package-merge (Larmore & Hirschberg 1990) in its counting form: list j (j = max_len .. 1) is the sorted
    merge of the leaves and pairwise packages of list j + 1; the first 2n - 2 items of list 1 are chosen,
    which selects a prefix of the leaves in each list, and a symbol's length is the number of lists whose
    selected prefix contains it.
    """
    n = weights.size
    if n == 1:
        return np.ones(1, dtype=np.int64)
    order = np.argsort(weights, kind="stable")
    leaves = weights[order].astype(np.float64)
    lists: list[np.ndarray] = []  # per list (from max_len down to 1): is_leaf flags of the merged items
    prev = leaves
    lists.append(np.ones(n, dtype=bool))
    for _ in range(max_len - 1):
        packages = prev[: prev.size // 2 * 2].reshape(-1, 2).sum(axis=1)
        merged = np.concatenate([leaves, packages])
        idx = np.argsort(merged, kind="stable")  # leaves first among equal weights
        prev = merged[idx]
        lists.append(idx < n)
    lengths_sorted = np.zeros(n, dtype=np.int64)
    take = 2 * n - 2  # items chosen from list 1, then 2 * packages chosen from the list below
    for is_leaf in reversed(lists):
        chosen = is_leaf[:take]
        num_leaves = int(chosen.sum())
        lengths_sorted[:num_leaves] += 1
        take = 2 * (take - num_leaves)
    lengths = np.empty(n, dtype=np.int64)
    lengths[order] = lengths_sorted
    return lengths


@dataclass(frozen=True, eq=False)
class HuffmanModel:
    """Canonical Huffman codes for K levels of V symbols, described by their lengths alone."""

    lengths: np.ndarray  # (K, V) uint8, each in [1, 16], Kraft sum <= 1 per level

    def __post_init__(self) -> None:
        lens = np.asarray(self.lengths)
        if lens.ndim != 2 or lens.shape[0] < 1 or lens.shape[1] < 1:
            raise ValueError(f"lengths must be (K, V) with K, V >= 1, got shape {lens.shape}")
        if lens.min() < 1 or lens.max() > MAX_LEN_LIMIT:
            raise ValueError(f"code lengths must be in [1, {MAX_LEN_LIMIT}]")
        kraft = (np.int64(1) << (MAX_LEN_LIMIT - lens.astype(np.int64))).sum(axis=1)
        if (kraft > 1 << MAX_LEN_LIMIT).any():
            raise ValueError("code lengths violate the Kraft inequality: not a prefix code")
        object.__setattr__(self, "lengths", np.ascontiguousarray(lens, dtype=np.uint8))

    @property
    def num_codebooks(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.lengths.shape[1])

    @property
    def table_bits(self) -> int:
        """L: the longest code in use, the width of the decode window."""
        return int(self.lengths.max())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HuffmanModel) and np.array_equal(self.lengths, other.lengths)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def fit(cls, codes_list: Iterable[np.ndarray], codebook_size: int, max_len: int = 15) -> HuffmanModel:
        """Lengths from symbol counts (+1 each, so unseen symbols get codes) over `(K, T)` arrays."""
        if not 1 <= max_len <= MAX_LEN_LIMIT or (1 << max_len) < codebook_size:
            raise ValueError(f"max_len must be in [1, {MAX_LEN_LIMIT}] with 2**max_len >= V={codebook_size}")
        counts: np.ndarray | None = None
        for codes in codes_list:
            c = np.asarray(codes)
            if c.ndim != 2:
                raise ValueError(f"codes must be (K, T), got shape {c.shape}")
            if c.size and (c.min() < 0 or c.max() >= codebook_size):
                raise ValueError(f"codes outside [0, {codebook_size})")
            k = c.shape[0]
            if counts is None:
                counts = np.zeros((k, codebook_size), dtype=np.int64)
            elif counts.shape[0] != k:
                raise ValueError(f"arrays disagree on K: {counts.shape[0]} and {k}")
            flat = (c.astype(np.int64) + np.arange(k)[:, None] * codebook_size).ravel()
            counts += np.bincount(flat, minlength=k * codebook_size).reshape(k, codebook_size)
        if counts is None:
            raise ValueError("fit needs at least one (K, T) array")
        lengths = np.stack([_package_merge(row + 1, max_len) for row in counts])
        return cls(lengths.astype(np.uint8))

    def to_list(self) -> list[str]:
        """JSON-able: one string per level, V hex digits, each `length - 1`."""
        return [(row - 1).tobytes().hex()[1::2] for row in self.lengths]

    @classmethod
    def from_list(cls, levels: list[str]) -> HuffmanModel:
        return cls(np.array([[int(ch, 16) + 1 for ch in row] for row in levels], dtype=np.uint8))

    @cached_property
    def codewords(self) -> np.ndarray:
        """(K, V) int64 canonical codewords: per level, symbols sorted by (length, symbol) take
        consecutive codes; codeword i is the Kraft sum of the codes before it, read at its length."""
        lens = self.lengths.astype(np.int64)
        out = np.empty_like(lens)
        for k in range(lens.shape[0]):
            order = np.lexsort((np.arange(lens.shape[1]), lens[k]))
            units = np.int64(1) << (MAX_LEN_LIMIT - lens[k, order])  # (V,) in units of 2**-16
            starts = np.cumsum(units) - units
            out[k, order] = starts >> (MAX_LEN_LIMIT - lens[k, order])
        return out

    @cached_property
    def decode_table(self) -> np.ndarray:
        """(K * 2**L,) int32: the entry `symbol << 5 | length` for every L-bit window of every level;
        windows that start no codeword (only when the Kraft sum is below 1) hold 0."""
        lbits = self.table_bits
        k_, v = self.lengths.shape
        table = np.zeros((k_, 1 << lbits), dtype=np.int32)
        for k in range(k_):
            lens = self.lengths[k].astype(np.int64)
            order = np.lexsort((np.arange(v), lens))  # canonical order: windows ascend with it
            entries = (order << _LEN_BITS | lens[order]).astype(np.int32)
            reps = np.int64(1) << (lbits - lens[order])
            filled = np.repeat(entries, reps)
            table[k, : filled.size] = filled
        return table.reshape(-1)

    @cached_property
    def _mean_length_units(self) -> list[int]:
        """Per level, the mean code length under the implied distribution 2**-length, in 2**-16 bits."""
        lens = self.lengths.astype(np.int64)
        return [int(x) for x in (lens << (MAX_LEN_LIMIT - lens)).sum(axis=1)]


def _predicted_bytes(model: HuffmanModel, num_frames: int) -> list[int]:
    """Predicted byte length of each level's stream (exact integer arithmetic, so encoder and decoder agree)."""
    return [(num_frames * m // (1 << MAX_LEN_LIMIT) + 7) // 8 for m in model._mean_length_units]


def _check_codes(codes: np.ndarray, model: HuffmanModel) -> np.ndarray:
    return check_codes(codes, model.num_codebooks, model.codebook_size).astype(np.int64, copy=False)


def encode(codes: np.ndarray, model: HuffmanModel) -> bytes:
    """codes `(K, T)` ints in [0, V) -> `[K nibble varints][K byte-padded bitstreams]` (b"" when T = 0)."""
    c = _check_codes(codes, model)
    k_, t = c.shape
    if t == 0:
        return b""
    flat = (c + np.arange(k_)[:, None] * model.codebook_size).ravel()  # (K * T,) level-major
    lens = model.lengths.reshape(-1).astype(np.int64)[flat]  # (K * T,)
    words = model.codewords.reshape(-1)[flat]  # (K * T,)
    level_bits = lens.reshape(k_, t).sum(axis=1)  # (K,)
    level_bytes = (level_bits + 7) // 8
    pad = level_bytes * 8 - level_bits  # (K,) zero bits closing each stream
    starts = np.cumsum(lens) - lens + np.repeat(np.cumsum(pad) - pad, t)  # (K * T,) first bit of each codeword
    # Codewords never share a bit, so OR is a sum: place each (<= 16 bits, at offset < 16) in a 32-bit value
    # over 16-bit words `start >> 4` and the next, sum per word with one weighted bincount (exact in
    # float64: the sums are < 2**32), and carry each word's low half into the following word.
    value = words << (32 - (starts & 15) - lens)  # (K * T,) < 2**32
    n16 = int(level_bytes.sum() + 1) // 2 + 1
    total = np.bincount(starts >> 4, weights=value, minlength=n16).astype(np.int64)  # (n16,)
    out16 = total >> 16
    out16[1:] += total[:-1] & 0xFFFF
    body = out16.astype(">u2").tobytes()[: int(level_bytes.sum())]
    nibbles: list[int] = []
    for actual, predicted in zip(level_bytes.tolist(), _predicted_bytes(model, t)):
        d = actual - predicted
        z = 2 * d if d >= 0 else -2 * d - 1  # zigzag
        while z >= 8:  # 3 payload bits per nibble, low first; the top bit says "more follows"
            nibbles.append(z & 7 | 8)
            z >>= 3
        nibbles.append(z)
    nibbles += [0] * (len(nibbles) % 2)
    header = bytes(hi << 4 | lo for hi, lo in zip(nibbles[0::2], nibbles[1::2]))
    return header + body


def _read_header(raw: np.ndarray, model: HuffmanModel, num_frames: int) -> tuple[list[int], int]:
    """(byte length of each level's stream, header size in bytes)."""
    sizes, pos = [], 0  # pos counts nibbles
    for predicted in _predicted_bytes(model, num_frames):
        z, shift = 0, 0
        while True:
            if pos >= 2 * raw.size or shift > 60:
                raise ValueError("entropy-coded data: truncated or corrupt header")
            nib = int(raw[pos // 2]) >> (4 * (1 - pos % 2)) & 15
            pos += 1
            z |= (nib & 7) << shift
            shift += 3
            if nib < 8:
                break
        size = predicted + (z >> 1 if z % 2 == 0 else -(z + 1) // 2)
        if size < 0:
            raise ValueError("entropy-coded data: corrupt header")
        sizes.append(size)
    return sizes, (pos + 1) // 2


def decode(data: bytes | np.ndarray, model: HuffmanModel, num_codebooks: int, num_frames: int) -> np.ndarray:
    """`encode`'s bytes -> int64 codes `(K, T)`."""
    k_, t = num_codebooks, num_frames
    if k_ != model.num_codebooks:
        raise ValueError(f"model has K={model.num_codebooks} levels, asked for {k_}")
    raw = (
        np.frombuffer(data, dtype=np.uint8)
        if isinstance(data, (bytes, bytearray, memoryview))
        else (np.asarray(data, dtype=np.uint8).reshape(-1))
    )
    if t == 0:
        if raw.size:
            raise ValueError("entropy-coded data: bytes given for zero frames")
        return np.zeros((k_, 0), dtype=np.int64)
    sizes, head = _read_header(raw, model, t)
    if min(sizes) * 8 < t:  # every codeword has at least one bit
        raise ValueError("entropy-coded data: a stream is too short for its frames")
    if head + sum(sizes) != raw.size:
        raise ValueError(f"entropy-coded data: {raw.size} bytes, the header says {head + sum(sizes)}")
    body = raw[head:]
    nbytes = body.size
    if nbytes >= 1 << 27:  # bit positions are int32
        raise ValueError("entropy-coded data over 128 MiB: decode it in smaller pieces")
    lbits = model.table_bits
    # The L-bit window at every bit position: a 24-bit big-endian word per byte (L <= 16, bit offset <= 7).
    padded = np.zeros(nbytes + 2, dtype=np.int32)
    padded[:nbytes] = body
    word = padded[:-2] << 16 | padded[1:-1] << 8 | padded[2:]  # (nbytes,)
    shifts = 24 - lbits - np.arange(8, dtype=np.int32)  # (8,) bit r of a byte starts the window
    level_of_byte = np.repeat(np.arange(k_, dtype=np.int32), sizes) << lbits  # (nbytes,) table row offset
    index = (word[:, None] >> shifts) & ((1 << lbits) - 1)  # (nbytes, 8)
    index += level_of_byte[:, None]
    entry = model.decode_table[index.reshape(-1)]  # (nbytes * 8,) symbol << 5 | length at every bit
    nxt = (entry & ((1 << _LEN_BITS) - 1)) + np.arange(entry.size, dtype=np.int32)  # next codeword's start
    starts = np.cumsum(sizes) - np.asarray(sizes)  # (K,) byte offset of each stream
    pos = np.empty((t, k_), dtype=np.int32)  # (T, K) bit position of each codeword
    pos[0] = starts * 8
    for i in range(1, t):
        np.take(nxt, pos[i - 1], out=pos[i], mode="clip")  # clip: corrupt data stays in bounds
    visited = entry[pos]  # (T, K)
    lens = visited & ((1 << _LEN_BITS) - 1)
    end = pos[-1].astype(np.int64) + lens[-1]  # (K,) bit after the last codeword
    stream_end = (starts + np.asarray(sizes)) * 8
    if (lens == 0).any() or (end > stream_end).any() or (end <= stream_end - 8).any():
        raise ValueError("entropy-coded data: invalid codeword or stream length (corrupt data or wrong model)")
    return np.ascontiguousarray((visited >> _LEN_BITS).T, dtype=np.int64)  # (K, T)
