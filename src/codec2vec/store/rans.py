"""Blocked rANS coding of codec codes: within a fraction of a percent of the order-0 entropy, random crops cheap.

Each utterance's codes `(K, T)` are cut into blocks of B frames (restart points). A block holds its rows,
row-major, in one range-ANS stream (Duda 2013; word-wise rANS as Giesen's `rans_word`: 32-bit states, 16-bit
renormalisation, two interleaved states, compiled with numba in `rans_kernels.py`), each row coded with its own
fixed order-0 model. A row is a level, or, when V * V <= 1024 (Lyra: V = 16), a pair of adjacent levels coded as
one symbol of V * V: residual quantizers' neighbouring levels are not independent, so pairs go below the sum of
the levels' order-0 entropies (Lyra 16/30/46 levels on a 1.5 h corpus: 3.0/1.6/1.0% below) and halve the
symbols to decode. A crop decodes only the blocks it overlaps, so a read costs `(crop + B) * rows` symbols
whatever the utterance's length. A block starts with the coder's two final states (64 bits), and the record
header holds one byte per block, so B is chosen to make a block about `BLOCK_BITS` bits long (overhead ~0.6%).

- `RansModel.logp (G, A) uint8`: each row's symbol probabilities (G rows of A symbols: K levels of V, or K/2
  rounded up pairs of V * V, an odd K's last level paired with zeros) as `-8 log2 p`, rounded (1/8-bit steps:
  ~0.0005 bits per symbol lost; 255 for unseen symbols), fitted on symbol counts (`fit`). They become
  `freqs (G, A)`, multiples of 2**-precision (`precision_for(A)`: 12 bits for V = 16 and pairs of 16, 14
  for V = 1024) with every symbol >= 1 (so any code can be written), by integer arithmetic alone: identical on
  every machine, no library in between. A shard's index holds the model (`to_dict`): the format `version`,
  `logp8` (one hex string per row), K, V, `pairs`, the block length and the expected bits per frame (integer,
  in 1/256 bit: the header predicts each block's size from it).
- Record = `[header][block 0][block 1]...`: the header has one zigzag byte-varint per block (7 bits and a
  continuation bit): its length in 16-bit words minus the length predicted from its frames; the blocks are
  little-endian uint16 words, each starting with its final state. T = 0 encodes to b"". K and T are not
  stored: the caller keeps them.
- `encode(codes (K, T), model) -> bytes`; `decode(data, model, K, T, start, stop) -> int64 (K, stop - start)`.
  Corrupt data (a header that disagrees with the record's size, a block that reads past its end or does not
  end in the coder's initial states exactly at its last word) raises ValueError naming the block; every block
  length is bounded by the record's size before it is summed, so the kernels never read outside the record. The store also checks each record's CRC-32 before decoding.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from codec2vec.store.packing import check_codes

VERSION = 2  # the rANS format (kernels in `rans_kernels.py`); the shard index names it, readers refuse others
MAX_SYMBOLS = 1 << 14  # V above this: every symbol's floor of 2**-16 would cost too much (Huffman takes them)
MAX_PAIR_SYMBOLS = 1024  # adjacent levels are modelled as pairs when V * V is at most this (Lyra: 16 * 16)
BLOCK_BITS = 12288  # target size of a block; its 64 bits of states and its header byte cost ~0.6%
FLUSH_BITS = 48  # mean bits the coder's two final states add to a block (measured; only used to predict sizes)
_Q = 256  # bits_per_frame is kept in 1/256 bit
_KERNELS: Any = None  # rans_kernels, imported at first use


def precision_for(symbols: int) -> int:
    """Probability precision in bits for an alphabet of `symbols`: 4 bits above its size, 12 to 16 (decode tables
    of 2**precision entries per row: small enough to stay in cache)."""
    return int(np.clip((symbols - 1).bit_length() + 4, 12, 16))


def _kernels() -> Any:
    """The compiled kernels; numba caches them under $NUMBA_CACHE_DIR, else $CODEC2VEC_CACHE/numba, else
    ~/.cache/codec2vec/numba (set here, at first use, only when unset); without a writable folder numba compiles
    in memory and its warning is silenced."""
    global _KERNELS
    if _KERNELS is None:
        if "NUMBA_CACHE_DIR" not in os.environ:
            base = os.environ.get("CODEC2VEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "codec2vec")
            os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "numba")
        import numba

        config: Any = numba.config
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # numba reads the variable once, at its import
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=numba.NumbaWarning)
            try:
                from codec2vec.store import rans_kernels
            except RuntimeError:  # "cannot cache function ...: no locator available": compile without a cache
                config.CACHE_DIR = tempfile.mkdtemp(prefix="codec2vec-numba-")
                from codec2vec.store import rans_kernels
        _KERNELS = rans_kernels
    return _KERNELS


# 2**30 * 2**(-j/8), j = 0..7, as exact integers: frequencies follow from the stored log-probabilities with
# integer arithmetic alone, identically on every machine
_ROOTS = np.array([1073741824, 984625594, 902905651, 827968132, 759250125, 696235434, 638450708, 585461881])


def _freqs(logp: np.ndarray, precision: int) -> np.ndarray:
    """(V,) uint8 log-probabilities (-8 log2 p, rounded) -> (V,) int64 frequencies, each >= 1, summing to
    2**precision (largest remainders; ties to the lower symbol)."""
    c = logp.astype(np.int64)
    w = _ROOTS[c % 8] >> (c // 8)  # (V,) ~ p * 2**30
    spare, total = (1 << precision) - c.size, int(w.sum())
    if total == 0:
        w, total = np.ones_like(w), c.size
    q = w * spare  # < 2**46
    freqs = q // total
    short = spare - int(freqs.sum())
    freqs[np.argsort(-(q - freqs * total), kind="stable")[:short]] += 1
    return freqs + 1


class RansModel:
    """Order-0 models of K levels of V symbols (or of pairs of adjacent levels), and the block length."""

    def __init__(
        self,
        *,
        logp: np.ndarray,
        num_codebooks: int,
        codebook_size: int,
        block_frames: int,
        bits_per_frame: int,
    ) -> None:
        lp, k, v = np.asarray(logp), int(num_codebooks), int(codebook_size)
        pairs = lp.ndim == 2 and lp.shape[1] == v * v and v > 1
        groups = -(-k // 2) if pairs else k
        if lp.dtype != np.uint8 or lp.ndim != 2 or k < 1 or not 2 <= v <= MAX_SYMBOLS or lp.shape[0] != groups:
            raise ValueError(f"logp must be uint8 (K or K/2 rounded up, V or V*V) for K={k}, V={v}, got {lp.shape}")
        if not pairs and lp.shape[1] != v:
            raise ValueError(f"logp has {lp.shape[1]} symbols per row, not V={v} or V*V")
        if pairs and v * v > MAX_SYMBOLS:
            raise ValueError(f"pairs of levels need V * V <= {MAX_SYMBOLS}, got V={v}")
        if not 1 <= block_frames <= 1 << 16 or not 0 <= bits_per_frame <= 16 * _Q * groups:
            raise ValueError(f"bad block_frames {block_frames} or bits_per_frame_q256 {bits_per_frame}")
        self.logp, self.num_codebooks, self.codebook_size, self.pairs = lp, k, v, pairs
        self.block_frames, self.bits_per_frame = int(block_frames), int(bits_per_frame)
        prec = precision_for(lp.shape[1])
        self.freqs = np.stack([_freqs(row, prec) for row in lp])  # (G, A) int64, each row sums to 2**precision
        self._tables: tuple[np.ndarray, ...] | None = None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RansModel)
            and np.array_equal(self.logp, other.logp)
            and (self.num_codebooks, self.codebook_size, self.block_frames, self.bits_per_frame)
            == (other.num_codebooks, other.codebook_size, other.block_frames, other.bits_per_frame)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:  # the decode tables are rebuilt in each worker process
        return {**self.__dict__, "_tables": None}

    def join(self, codes: np.ndarray) -> np.ndarray:
        """int codes `(K, T)` -> the coded symbols `(G, T)` int32: pairs `2i, 2i+1` as `V * c[2i] + c[2i+1]` (an
        odd K's last level pairs with zeros), or the levels themselves."""
        c = np.asarray(codes, dtype=np.int32)
        if not self.pairs:
            return c
        if c.shape[0] % 2:
            c = np.concatenate([c, np.zeros((1, c.shape[1]), dtype=np.int32)])
        return c[0::2] * self.codebook_size + c[1::2]

    def split(self, symbols: np.ndarray) -> np.ndarray:
        """`join`'s inverse: `(G, n)` -> int64 `(K, n)`."""
        if not self.pairs:
            return symbols.astype(np.int64)
        g, n = symbols.shape
        out = np.empty((g, 2, n), dtype=np.int64)
        np.floor_divide(symbols, self.codebook_size, out=out[:, 0])
        np.remainder(symbols, self.codebook_size, out=out[:, 1])
        return out.reshape(2 * g, n)[: self.num_codebooks]

    @classmethod
    def fit(
        cls,
        codes_list: Iterable[np.ndarray],
        codebook_size: int,
        *,
        block_bits: int = BLOCK_BITS,
        pairs: bool | None = None,
    ) -> RansModel:
        """Frequencies from symbol counts over `(K, T)` arrays; B frames per block, B a multiple of 16 making a
        block about `block_bits` bits (16 to 4096 frames). `pairs` (default: when V * V <= MAX_PAIR_SYMBOLS)
        models adjacent levels jointly."""
        v = int(codebook_size)
        if not 2 <= v <= MAX_SYMBOLS:
            raise ValueError(f"rANS coding takes 2 <= V <= {MAX_SYMBOLS}, got {v}")
        pairs = v * v <= MAX_PAIR_SYMBOLS if pairs is None else pairs
        if pairs and v * v > MAX_SYMBOLS:
            raise ValueError(f"pairs of levels need V * V <= {MAX_SYMBOLS}, got V={v}")
        counts: np.ndarray | None = None
        k = 0
        for codes in codes_list:
            c = np.asarray(codes)
            if c.ndim != 2 or (counts is not None and c.shape[0] != k) or c.shape[0] < 1:
                raise ValueError(f"codes must be (K, T) with one K >= 1, got shape {c.shape}")
            if c.size and (c.min() < 0 or c.max() >= v):
                raise ValueError(f"codes outside [0, {v})")
            if counts is None:
                k = c.shape[0]
                counts = np.zeros((-(-k // 2), v * v) if pairs else (k, v), dtype=np.int64)
            sym = c.astype(np.int64)
            if pairs:
                sym = np.concatenate([sym, np.zeros((k % 2, sym.shape[1]), dtype=np.int64)])
                sym = sym[0::2] * v + sym[1::2]  # (G, T)
            flat = (sym + np.arange(sym.shape[0])[:, None] * counts.shape[1]).ravel()
            counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
        if counts is None:
            raise ValueError("fit needs at least one (K, T) array")
        p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (G, A)
        logp = np.where(p > 0, np.clip(np.round(-8 * np.log2(np.where(p > 0, p, 1))), 0, 254), 255)
        shape = dict(num_codebooks=k, codebook_size=v)
        model = cls(logp=logp.astype(np.uint8), **shape, block_frames=16, bits_per_frame=0)
        q = model.freqs / float(1 << model.precision)
        bits = float(-(p * np.log2(q)).sum())  # expected bits per frame: the counts' cross-entropy under the model
        block = int(np.clip(-(-block_bits / max(bits, 1e-9) // 16) * 16, 16, 4096))
        return cls(logp=model.logp, **shape, block_frames=block, bits_per_frame=round(bits * _Q))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the shard index."""
        return {
            "version": VERSION,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "pairs": self.pairs,
            "block_frames": self.block_frames,
            "bits_per_frame_q256": self.bits_per_frame,
            "logp8": [row.tobytes().hex() for row in self.logp],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RansModel:
        """The model of a shard's index; ValueError if it is malformed."""
        try:
            if int(doc["version"]) != VERSION:
                raise ValueError(f"format version {doc['version']} (this codec2vec reads version {VERSION})")
            v = int(doc["codebook_size"])
            if bool(doc["pairs"]) and not 2 <= v <= MAX_SYMBOLS // v:
                raise ValueError(f"pairs of levels need V * V <= {MAX_SYMBOLS}, got V={v}")
            rows = [bytes.fromhex(h) for h in doc["logp8"]]
            if not rows or len({len(r) for r in rows}) != 1:
                raise ValueError("rows of different sizes")
            model = cls(
                logp=np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1),
                num_codebooks=int(doc["num_codebooks"]),
                codebook_size=v,
                block_frames=int(doc["block_frames"]),
                bits_per_frame=int(doc["bits_per_frame_q256"]),
            )
            if model.pairs != bool(doc["pairs"]):
                raise ValueError("the 'pairs' flag disagrees with the table")
            return model
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed rANS model ({e})") from None

    @property
    def precision(self) -> int:
        """Bits of the quantised probabilities: 12 for small alphabets, up to 16 (decode tables of 2**bits)."""
        return precision_for(self.logp.shape[1])

    def tables(self) -> tuple[np.ndarray, ...]:
        """The kernels' tables (built on first use): `tab (G, 2**precision)` uint32 slot -> `freq << 16 |
        (slot - cum)` of its symbol and `sym (G, 2**precision)` uint16 slot -> symbol (decoding), `freq`, `cum
        (G, A)` int64 (encoding), and a symbol's first and second level `hi`, `lo (A,)` int64 (pairs)."""
        if self._tables is None:
            g, a = self.freqs.shape
            cum = np.zeros((g, a), dtype=np.int64)
            np.cumsum(self.freqs[:, :-1], axis=1, out=cum[:, 1:])
            sym = np.stack([np.repeat(np.arange(a, dtype=np.uint16), row) for row in self.freqs])  # (G, 2**prec)
            rows = np.arange(g)[:, None]
            slot = np.arange(1 << self.precision, dtype=np.int64)[None, :]
            tab = ((self.freqs[rows, sym] << 16) | (slot - cum[rows, sym])).astype(np.uint32)  # (G, 2**prec)
            levels = np.arange(a, dtype=np.int64)
            hi, lo = (levels // self.codebook_size, levels % self.codebook_size) if self.pairs else (levels, levels)
            self._tables = (tab, sym, np.ascontiguousarray(self.freqs), cum, hi, lo)
        return self._tables

    @property
    def min_bits_per_frame(self) -> float:
        """A lower bound on the bits any frame costs: each row's most probable symbol (a crafted index cannot make
        a few bytes stand for more frames than this allows: their codes would not fit in memory)."""
        return float(-np.log2(self.freqs.max(axis=1) / float(1 << self.precision)).sum()) * (1 - 1e-9)

    def predicted_words(self, frames: int) -> int:
        """Predicted length in 32-bit words of a block of `frames` frames (exact integer arithmetic)."""
        return (frames * self.bits_per_frame // _Q + FLUSH_BITS + 8) // 16


def model_bytes(model: RansModel) -> int:
    """What the model adds to a shard's (zlib-compressed) index."""
    return len(zlib.compress(json.dumps(model.to_dict()).encode()))


def fit_smallest(codes_list: list[np.ndarray], codebook_size: int) -> RansModel:
    """The model (levels, or pairs of levels where V allows) that makes these codes smallest, its own size
    included: pairs code below the levels' entropy but their tables cost V * V bytes per pair (small shards)."""
    frames = sum(int(np.asarray(c).shape[1]) for c in codes_list)
    options = [RansModel.fit(codes_list, codebook_size, pairs=False)]
    if codebook_size**2 <= MAX_PAIR_SYMBOLS:
        options.append(RansModel.fit(codes_list, codebook_size, pairs=True))
    return min(options, key=lambda m: m.bits_per_frame * frames / (8 * _Q) + model_bytes(m))


def _check_codes(codes: np.ndarray, model: RansModel) -> np.ndarray:
    return model.join(check_codes(codes, model.num_codebooks, model.codebook_size))  # (G, T) int32


def encode(codes: np.ndarray, model: RansModel) -> bytes:
    """codes `(K, T)` ints in [0, V) -> `[one varint per block][blocks of uint16 words]` (b"" when T = 0)."""
    sym = _check_codes(codes, model).astype(np.int64)  # (G, T)
    t, b = sym.shape[1], model.block_frames
    if t == 0:
        return b""
    _, _, freq, cum, _, _ = model.tables()
    words, lengths = _kernels().encode_blocks(sym, freq, cum, model.precision, b)
    nb = lengths.size
    predicted = np.full(nb, model.predicted_words(b), dtype=np.int64)
    predicted[-1] = model.predicted_words(t - (nb - 1) * b)
    header = bytearray()
    for d in (lengths - predicted).tolist():
        z = 2 * d if d >= 0 else -2 * d - 1  # zigzag
        while z >= 0x80:
            header.append(z & 0x7F | 0x80)
            z >>= 7
        header.append(z)
    return bytes(header) + words.astype("<u2", copy=False).tobytes()


def decode(
    data: bytes | np.ndarray,
    model: RansModel,
    num_codebooks: int,
    num_frames: int,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """Frames `[start, stop)` of `encode`'s bytes -> int64 codes `(K, stop - start)`, decoding only the blocks
    the crop overlaps; ValueError (naming the block) on corrupt data."""
    k_, t = num_codebooks, num_frames
    stop = t if stop is None else stop
    if k_ != model.num_codebooks:
        raise ValueError(f"model has K={model.num_codebooks} levels, asked for {k_}")
    if not 0 <= start <= stop <= t:
        raise ValueError(f"frames [{start}, {stop}) outside {t} frames")
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if t == 0:
        if raw.size:
            raise ValueError("rANS data: bytes given for zero frames")
        return np.zeros((k_, 0), dtype=np.int64)
    b = model.block_frames
    if -(-t // b) * 9 > raw.size:  # a block takes a header byte and two 32-bit states at least
        raise ValueError(f"rANS data: {raw.size} bytes cannot hold {-(-t // b)} blocks of {t} frames")
    full, last = model.predicted_words(b), model.predicted_words(t - (-(-t // b) - 1) * b)
    tab, sym, _, _, hi, lo = model.tables()
    out = np.empty((k_, stop - start), dtype=np.int64)
    code, where = _kernels().decode_record(
        raw, t, start, stop, b, full, last, model.precision, tab, sym, hi, lo, model.pairs, out
    )
    if code:
        raise ValueError(_error(code, where, raw.size))
    return out


def _error(code: int, where: int, size: int) -> str:
    """The message of a kernel's error code."""
    k = _kernels()
    if code == k.BAD_VARINT:
        return f"rANS data: truncated or corrupt header (block {where})"
    if code == k.BAD_LENGTH:
        return f"rANS data: corrupt header (block {where} shorter than its states or longer than the record)"
    if code == k.BAD_SIZE:
        return f"rANS data: {size} bytes, the header says {where}"
    return f"rANS data: block {where} does not end where its length says (corrupt data or wrong model)"
