"""Blocked rANS coding of codec codes: within a fraction of a percent of the order-0 entropy, random crops cheap.

Each utterance's codes `(K, T)` are cut into blocks of B frames (restart points). A block holds its rows,
row-major, in one asymmetric-numeral-systems stream (Duda 2013; `constriction`'s `stream.stack.AnsCoder`,
Bamler 2022: 32-bit words, a 64-bit state), each row coded with its own fixed order-0 `Categorical` model. A row
is a level, or, when V * V <= 1024 (Lyra: V = 16), a pair of adjacent levels coded as one symbol of V * V:
residual quantizers' neighbouring levels are not independent, so pairs go below the sum of the levels' order-0
entropies (Lyra 16/30/46 levels: 4.4/2.4/1.7% below) and halve the symbols to decode. A crop decodes only the
blocks it overlaps, so a read costs `(crop + B) * rows` symbols whatever the utterance's length. A block's
stream ends with the coder's state (about 35 bits), and the record header holds one byte per block, so B is
chosen to make a block about `BLOCK_BITS` bits long (overhead ~0.35%).

- `RansModel.logp (G, A) uint8`: each row's symbol probabilities (G rows of A symbols: K levels of V, or K/2
  rounded up pairs of V * V, an odd K's last level paired with zeros) as `-8 log2 p`, rounded (1/8-bit steps:
  ~0.0005 bits per symbol lost; 255 for unseen symbols), fitted on symbol counts (`fit`). They become
  `freqs (G, A)`, multiples of 2**-16 with every symbol >= 1 (so any code can be written), by integer
  arithmetic alone. A shard's index holds the model (`to_dict`): `logp8` (one hex string per row), K, V,
  `pairs`, the block length, the expected bits per frame (integer, in 1/256 bit: the header predicts each
  block's size from it) and `check`, the CRC-32 of a probe coded with the models: `constriction` re-quantises
  the probabilities to its own precision, and should a future version do so differently, `check_library`
  refuses the shard instead of decoding garbage.
- Record = `[header][block 0][block 1]...`: the header has one zigzag byte-varint per block (7 bits and a
  continuation bit): its length in 32-bit words minus the length predicted from its frames; the blocks are
  little-endian uint32 words. T = 0 encodes to b"". K and T are not stored: the caller keeps them.
- `encode(codes (K, T), model) -> bytes`; `decode(data, model, K, T, start, stop) -> int64 (K, stop - start)`.
  Corrupt data (a header that disagrees with the record's size, a block that does not end where its length
  says) raises ValueError; the store also checks each record's CRC-32 before decoding.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

PRECISION = 16  # probabilities are multiples of 2**-16
MAX_SYMBOLS = 1 << 14  # V above this: every symbol's floor of 2**-16 would cost too much (Huffman takes them)
MAX_PAIR_SYMBOLS = 1024  # adjacent levels are modelled as pairs when V * V is at most this (Lyra: 16 * 16)
BLOCK_BITS = 12288  # target size of a block; its ~43 bits of state and header cost ~0.35%
FLUSH_BITS = 35  # mean bits the coder's final state adds to a block (measured; only used to predict sizes)
_Q = 256  # bits_per_frame is kept in 1/256 bit
_LIBRARY_CHECKED: set[tuple[bytes, tuple[int, ...], int]] = set()  # models whose probe matched this constriction
_WORD = np.dtype(np.uint32) if sys.byteorder == "little" else np.dtype("<u4")  # words: little-endian on disk


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("constriction")
    except PackageNotFoundError:
        return "?"


# 2**30 * 2**(-j/8), j = 0..7, as exact integers: frequencies follow from the stored log-probabilities with
# integer arithmetic alone, identically on every machine
_ROOTS = np.array([1073741824, 984625594, 902905651, 827968132, 759250125, 696235434, 638450708, 585461881])


def _freqs(logp: np.ndarray) -> np.ndarray:
    """(V,) uint8 log-probabilities (-8 log2 p, rounded) -> (V,) int64 frequencies, each >= 1, summing to
    2**PRECISION (largest remainders; ties to the lower symbol)."""
    c = logp.astype(np.int64)
    w = _ROOTS[c % 8] >> (c // 8)  # (V,) ~ p * 2**30
    spare, total = (1 << PRECISION) - c.size, int(w.sum())
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
        check: int | None = None,
    ) -> None:
        lp, k, v = np.asarray(logp), int(num_codebooks), int(codebook_size)
        pairs = lp.ndim == 2 and lp.shape[1] == v * v and v > 1
        groups = -(-k // 2) if pairs else k
        if lp.dtype != np.uint8 or lp.ndim != 2 or k < 1 or not 2 <= v <= MAX_SYMBOLS or lp.shape[0] != groups:
            raise ValueError(f"logp must be uint8 (K or K/2 rounded up, V or V*V) for K={k}, V={v}, got {lp.shape}")
        if not pairs and lp.shape[1] != v:
            raise ValueError(f"logp has {lp.shape[1]} symbols per row, not V={v} or V*V")
        if not 1 <= block_frames <= 1 << 16 or bits_per_frame < 0:
            raise ValueError(f"bad block_frames {block_frames} or bits_per_frame {bits_per_frame}")
        self.logp, self.num_codebooks, self.codebook_size, self.pairs = lp, k, v, pairs
        self.block_frames, self.bits_per_frame = int(block_frames), int(bits_per_frame)
        self.freqs = np.stack([_freqs(row) for row in lp])  # (G, A) int64, each row sums to 2**PRECISION
        self._coders: list[Any] | None = None
        self.check = self.probe() if check is None else int(check)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RansModel)
            and np.array_equal(self.logp, other.logp)
            and (self.num_codebooks, self.codebook_size, self.block_frames, self.bits_per_frame)
            == (other.num_codebooks, other.codebook_size, other.block_frames, other.bits_per_frame)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:  # constriction's models are rebuilt in each worker process
        return {**self.__dict__, "_coders": None}

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
        model = cls(logp=logp.astype(np.uint8), **shape, block_frames=16, bits_per_frame=0, check=0)
        q = model.freqs / float(1 << PRECISION)
        bits = float(-(p * np.log2(q)).sum())  # expected bits per frame: the counts' cross-entropy under the model
        block = int(np.clip(-(-block_bits / max(bits, 1e-9) // 16) * 16, 16, 4096))
        return cls(logp=model.logp, **shape, block_frames=block, bits_per_frame=round(bits * _Q))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the shard index."""
        return {
            "precision": PRECISION,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "pairs": self.pairs,
            "block_frames": self.block_frames,
            "bits_per_frame_q256": self.bits_per_frame,
            "check": self.check,
            "logp8": [row.tobytes().hex() for row in self.logp],
            "library": f"constriction {_library_version()}",
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RansModel:
        """The model of a shard's index; ValueError if it is malformed."""
        try:
            if int(doc["precision"]) != PRECISION:
                raise ValueError(f"precision {doc['precision']} (this codec2vec reads {PRECISION})")
            rows = [bytes.fromhex(h) for h in doc["logp8"]]
            if not rows or len({len(r) for r in rows}) != 1:
                raise ValueError("rows of different sizes")
            v = int(doc["codebook_size"])
            model = cls(
                logp=np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1),
                num_codebooks=int(doc["num_codebooks"]),
                codebook_size=v,
                block_frames=int(doc["block_frames"]),
                bits_per_frame=int(doc["bits_per_frame_q256"]),
                check=int(doc["check"]),
            )
            if model.pairs != bool(doc["pairs"]):
                raise ValueError("the 'pairs' flag disagrees with the table")
            return model
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed rANS model ({e})") from None

    # --- constriction --------------------------------------------------------------------------------------

    @property
    def coders(self) -> list[Any]:
        """One `constriction` Categorical model per level (built on first use)."""
        if self._coders is None:
            import constriction

            scale = 1.0 / (1 << PRECISION)
            self._coders = [constriction.stream.model.Categorical(row * scale, perfect=False) for row in self.freqs]
        return self._coders

    def probe(self) -> int:
        """CRC-32 of every symbol of every model coded in one stream: changes if the models' quantisation does."""
        from constriction import stream

        coder = stream.stack.AnsCoder()
        for m in reversed(self.coders):
            coder.encode_reverse(np.arange(self.freqs.shape[1], dtype=np.int32), m)
        return zlib.crc32(coder.get_compressed().astype("<u4").tobytes())

    def check_library(self) -> None:
        """ValueError unless this `constriction` codes exactly as the one that wrote the model (each table is
        probed once per process: opening a store and verifying it check every shard)."""
        key = (self.logp.tobytes(), self.logp.shape, self.check)
        if key in _LIBRARY_CHECKED:
            return
        if self.probe() != self.check:
            raise ValueError(
                f"its rANS model codes differently under constriction {_library_version()} "
                "than when it was written (install the version named in the shard's index)"
            )
        _LIBRARY_CHECKED.add(key)

    def predicted_words(self, frames: int) -> int:
        """Predicted length in 32-bit words of a block of `frames` frames (exact integer arithmetic)."""
        return (frames * self.bits_per_frame // _Q + FLUSH_BITS + 16) // 32


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
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[0] != model.num_codebooks:
        raise ValueError(f"codes must be (K={model.num_codebooks}, T), got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= model.codebook_size):
        raise ValueError(f"codes outside [0, {model.codebook_size})")
    return model.join(c)  # (G, T) int32


def encode(codes: np.ndarray, model: RansModel) -> bytes:
    """codes `(K, T)` ints in [0, V) -> `[one varint per block][blocks of uint32 words]` (b"" when T = 0)."""
    from constriction import stream

    sym = _check_codes(codes, model)  # (G, T)
    t, b = sym.shape[1], model.block_frames
    header, blocks = bytearray(), []
    for s in range(0, t, b):
        block = sym[:, s : s + b]  # (G, <= B)
        coder = stream.stack.AnsCoder()
        for g in reversed(range(block.shape[0])):  # a stack: the last row in is the first out
            coder.encode_reverse(block[g], model.coders[g])
        words = coder.get_compressed()
        d = int(words.size) - model.predicted_words(block.shape[1])
        z = 2 * d if d >= 0 else -2 * d - 1  # zigzag
        while z >= 0x80:
            header.append(z & 0x7F | 0x80)
            z >>= 7
        header.append(z)
        blocks.append(words.astype("<u4").tobytes())
    return bytes(header) + b"".join(blocks)


def _varints(raw: np.ndarray, count: int) -> tuple[list[int], int]:
    """`count` zigzag byte-varints from the start of `raw`: (values, bytes read)."""
    if raw.size >= count > 16 and int(raw[:count].max()) < 0x80:  # long records, one byte each (the usual case)
        z = raw[:count].astype(np.int64)
        return np.where(z % 2 == 0, z >> 1, -((z + 1) >> 1)).tolist(), count
    out, pos, data = [], 0, raw[: 10 * count].tobytes()  # Python ints beat numpy's per-call cost here
    for _ in range(count):
        v, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 56:
                raise ValueError("rANS data: truncated or corrupt header")
            byte = data[pos]
            pos += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append(v >> 1 if v % 2 == 0 else -((v + 1) >> 1))
    return out, pos


def _block_ends(raw: np.ndarray, model: RansModel, num_frames: int) -> tuple[list[int], int]:
    """(byte offset after each block in the record, header bytes = offset of block 0)."""
    b = model.block_frames
    nb = -(-num_frames // b)
    deviations, head = _varints(raw, nb)
    full, last = model.predicted_words(b), model.predicted_words(num_frames - (nb - 1) * b)
    ends, end = [], head
    for j, d in enumerate(deviations):
        words = (full if j < nb - 1 else last) + d
        if words < 0:
            raise ValueError("rANS data: corrupt header")
        end += 4 * words
        ends.append(end)
    return ends, head


def decode(
    data: bytes | np.ndarray,
    model: RansModel,
    num_codebooks: int,
    num_frames: int,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """Frames `[start, stop)` of `encode`'s bytes -> int64 codes `(K, stop - start)`, decoding only the blocks
    the crop overlaps."""
    from constriction import stream

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
    ends, head = _block_ends(raw, model, t)
    if ends[-1] != raw.size:
        raise ValueError(f"rANS data: {raw.size} bytes, the header says {ends[-1]}")
    if start == stop:
        return np.zeros((k_, 0), dtype=np.int64)
    b, coders = model.block_frames, model.coders
    first, last = start // b, (stop - 1) // b
    pieces = []
    for j in range(first, last + 1):
        n = min(b, t - j * b)
        words = np.frombuffer(raw[ends[j - 1] if j else head : ends[j]].tobytes(), dtype=_WORD).astype(
            np.uint32, copy=False
        )
        try:
            coder = stream.stack.AnsCoder(words)
            pieces.append(np.concatenate([coder.decode(m, n) for m in coders]).reshape(-1, n))  # (G, n)
            sound = coder.is_empty()
        except (ValueError, RuntimeError, AssertionError) as e:
            raise ValueError(f"rANS data: block {j} cannot be decoded ({e})") from None
        if not sound:
            raise ValueError(f"rANS data: block {j} does not end where its length says (corrupt data or wrong model)")
    out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)  # (G, blocks * B)
    return model.split(out[:, start - first * b : stop - first * b])  # (K, stop - start) int64
