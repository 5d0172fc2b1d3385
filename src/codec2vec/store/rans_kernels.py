"""Compiled rANS kernels (numba) of `rans.py`: a record's blocks encoded, a crop's blocks decoded.

Range asymmetric numeral systems (Duda 2013; the layout of Giesen's `rans_byte`/`rans_word`): a 32-bit state
x in [L, 2**32) with L = 2**16, renormalised 16 bits at a time, probabilities quantised to `prec` <= 16 bits.
Two states interleaved (Giesen 2014): frame i of a row is coded by state i % 2, so the decoder runs two
independent dependency chains. A block is coded from its last symbol (last row, last frame) to its first,
starting from x = L, and its words are laid out so that the decoder reads forward: the two final states (each
high then low 16 bits) first, then the words in the order the decoder pulls them. The decoder ends with both
states at L exactly at the block's last word: anything else is corrupt data or a wrong model.
Words are little-endian uint16, read byte-wise (records are not aligned).

Only `rans.py` imports this module (lazily, after pointing numba's cache at a writable folder): importing it
imports numba. Every read of `raw` stays inside the record: `_block_ends` bounds each block's length (4 words to
the record's size) before summing, so block ends increase and the last is the record's end; a block's reads are
clamped to its last word, and a block that would have read past it fails its end check. The caller guarantees
that the record has at least a byte per block (`rans.decode`). Errors come back as codes, `rans.py` words them.

- `encode_blocks(sym (G, T) int64, freq (G, A) int64, cum (G, A) int64, prec, block) -> (words (W,) uint16,
  lengths (nb,) int64)`: symbols must be valid (checked by the caller).
- `decode_record(raw (N,) uint8, ..., pairs, out (K, stop - start) int64) -> (code, where)`: code 0 is success.
"""

from __future__ import annotations

import numpy as np
from numba import njit

RANS_L = 1 << 16  # lower bound of the state
OK, BAD_VARINT, BAD_LENGTH, BAD_SIZE, BAD_END = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def encode_blocks(sym, freq, cum, prec, block):  # type: ignore[no-untyped-def]
    g_, t = sym.shape
    nb = (t + block - 1) // block
    out = np.empty(g_ * t + 4 * nb, np.uint16)  # at most one word per symbol, four for each block's states
    lengths = np.empty(nb, np.int64)
    tmp = np.empty(g_ * block + 4, np.uint16)
    bound = (RANS_L >> prec) << 16
    pos = 0
    for j in range(nb):
        s0 = j * block
        n = min(block, t - s0)
        xs = np.full(2, RANS_L, np.int64)  # frame i of a row is coded by state i % 2
        w = tmp.size  # written backwards: the decoder reads forward
        for g in range(g_ - 1, -1, -1):
            for i in range(n - 1, -1, -1):
                s = sym[g, s0 + i]
                f = freq[g, s]
                x = xs[i & 1]
                if x >= bound * f:
                    w -= 1
                    tmp[w] = x & 0xFFFF
                    x >>= 16
                xs[i & 1] = ((x // f) << prec) + (x % f) + cum[g, s]
        for x in (xs[1], xs[0]):
            w -= 2
            tmp[w] = x >> 16
            tmp[w + 1] = x & 0xFFFF
        m = tmp.size - w
        out[pos : pos + m] = tmp[w:]
        lengths[j] = m
        pos += m
    return out[:pos], lengths


@njit(cache=True, nogil=True)
def _block_ends(raw, nb, full, last, ends):  # type: ignore[no-untyped-def]
    """Parse the header's zigzag varints into `ends` (byte offsets after each block): (code, where)."""
    p = 0
    for j in range(nb):
        v = 0
        shift = 0
        while True:
            if p >= raw.size or shift > 42:
                return BAD_VARINT, j
            byte = np.int64(raw[p])
            p += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        d = v >> 1 if v % 2 == 0 else -((v + 1) >> 1)
        words = (full if j < nb - 1 else last) + d
        if words < 4 or words > raw.size:  # bounded before any sum: no int64 wrap-around
            return BAD_LENGTH, j
        ends[j] = words
    end = p
    for j in range(nb):
        end += 2 * ends[j]  # <= 3 * raw.size: no wrap-around
        if end > raw.size:
            return BAD_SIZE, end
        ends[j] = end  # increasing: each block is at least 4 words
    if end != raw.size:
        return BAD_SIZE, end
    return OK, p


@njit(cache=True, nogil=True)
def _state(raw, p):  # type: ignore[no-untyped-def]
    """A block's 32-bit state stored as two little-endian words, high word first."""
    return (np.int64(raw[p + 1]) << 24) | (np.int64(raw[p]) << 16) | (np.int64(raw[p + 3]) << 8) | raw[p + 2]


@njit(cache=True, nogil=True)
def decode_record(raw, t, start, stop, block, full, last, prec, tab, sym, hi, lo, pairs, out):  # type: ignore[no-untyped-def]
    """Frames [start, stop) of a record into `out` (K, stop - start): `tab (G, 2**prec)` slot -> the symbol's
    `freq << 16 | (slot - cum)`, `sym (G, 2**prec)` slot -> symbol, `hi`/`lo (A,)` a symbol's first and second
    level when `pairs` (else unused). Two states, frame i of a row on state i % 2 (two independent chains)."""
    nb = (t + block - 1) // block
    ends = np.empty(nb, np.int64)
    code, head = _block_ends(raw, nb, full, last, ends)
    if code != OK or start == stop:
        return code, head
    k_ = out.shape[0]
    mask = (1 << prec) - 1
    buf = np.empty(block, np.int64)  # one row of a block's symbols
    for j in range(start // block, (stop - 1) // block + 1):
        s0 = j * block
        n = min(block, t - s0)
        p = head if j == 0 else ends[j - 1]
        end = ends[j]
        x0, x1 = _state(raw, p), _state(raw, p + 4)
        p += 8
        final = end - 2  # the block's last word: reads never go beyond it
        if x0 < RANS_L or x1 < RANS_L:
            return BAD_END, j
        a, b = max(start, s0) - s0, min(stop, s0 + n) - s0  # the crop's part of this block
        for g in range(tab.shape[0]):
            trow, srow = tab[g], sym[g]
            for i in range(0, n - 1, 2):  # two independent chains: frame i on x0, frame i + 1 on x1
                slot = x0 & mask
                e = np.int64(trow[slot])
                x0 = (e >> 16) * (x0 >> prec) + (e & 0xFFFF)
                buf[i] = srow[slot]
                q = min(p, final)  # branchless renormalisation: read a word, keep it if the state needs it
                r = np.int64(x0 < RANS_L)
                x0 = (x0 << (16 * r)) | (((np.int64(raw[q + 1]) << 8) | raw[q]) & -r)
                p += 2 * r
                slot = x1 & mask
                e = np.int64(trow[slot])
                x1 = (e >> 16) * (x1 >> prec) + (e & 0xFFFF)
                buf[i + 1] = srow[slot]
                q = min(p, final)  # branchless renormalisation: read a word, keep it if the state needs it
                r = np.int64(x1 < RANS_L)
                x1 = (x1 << (16 * r)) | (((np.int64(raw[q + 1]) << 8) | raw[q]) & -r)
                p += 2 * r
            if n & 1:
                slot = x0 & mask
                e = np.int64(trow[slot])
                x0 = (e >> 16) * (x0 >> prec) + (e & 0xFFFF)
                buf[n - 1] = srow[slot]
                q = min(p, final)  # branchless renormalisation: read a word, keep it if the state needs it
                r = np.int64(x0 < RANS_L)
                x0 = (x0 << (16 * r)) | (((np.int64(raw[q + 1]) << 8) | raw[q]) & -r)
                p += 2 * r
            o = s0 - start
            if not pairs:
                for i in range(a, b):
                    out[g, o + i] = buf[i]
            else:
                for i in range(a, b):
                    out[2 * g, o + i] = hi[buf[i]]
                if 2 * g + 1 < k_:
                    for i in range(a, b):
                        out[2 * g + 1, o + i] = lo[buf[i]]
        if x0 != RANS_L or x1 != RANS_L or p != end:  # p > end: it read past its end (clamped reads)
            return BAD_END, j
    return OK, 0
