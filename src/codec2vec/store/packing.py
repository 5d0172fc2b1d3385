"""Exact-bit-width packing of codec codes, frame-major, so that any range of frames is a byte range.

A frame's K codes of b = ceil(log2 V) bits each are packed big-endian into `frame_bytes(K, b)` bytes
(Lyra: 46 x 4 bits = 23 bytes; DAC-16k: 12 x 10 bits = 15 bytes), so a store keeps 6 kbps of DAC codes
as 6 kbps, not as uint16 (9.6 kbps) or int64. Frames `[s, e)` of an utterance are bytes
`[s * F, e * F)`, which makes random crops a slice of a memory map.

Shapes: `pack(codes (K, T) ints) -> uint8 (T * F,)`; `unpack(bytes (T * F,), K, b) -> int64 (K, T)`.
When lcm(b, 8) <= 64 bits and K fills whole groups, codes are unpacked a group at a time through 64-bit
integers (b = 10: 4 codes in 5 bytes); other layouts go through `np.unpackbits`. Either way a frame takes
ceil(K * b / 8) bytes (a label set, K = 1 with 100 classes: 1 byte per frame).
"""

from __future__ import annotations

import math

import numpy as np


def bits_for(codebook_size: int) -> int:
    """Bits per code for V entries."""
    return max(1, math.ceil(math.log2(max(2, codebook_size))))


def _group(num_codebooks: int, bits: int) -> tuple[int, int]:
    """(codes per group, bytes per group) for the fast path, or (0, 0) when a group would exceed 64 bits or
    the K codes of a frame do not fill whole groups (then the frame is K * bits rounded up to a byte)."""
    g = bits * 8 // math.gcd(bits, 8)  # lcm(bits, 8)
    per = g // bits
    return (per, g // 8) if g <= 64 and num_codebooks % per == 0 else (0, 0)


def frame_bytes(num_codebooks: int, bits: int) -> int:
    """Bytes per frame: ceil(K * bits / 8), never more (Lyra 46 x 4 bits: 23; DAC 12 x 10 bits: 15)."""
    return -(-num_codebooks * bits // 8)


PACK_FRAMES = 8192  # frames packed at a time (an hour of 50 Hz codes is 180k frames)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """codes `(K, T)` (any integer dtype, values in [0, 2**bits)) -> uint8 `(T * F,)`."""
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be (K, T), got shape {c.shape}")
    k, t = c.shape
    if t and (c.min() < 0 or c.max() >= (1 << bits)):
        raise ValueError(f"codes outside [0, {1 << bits}) cannot be packed in {bits} bits")
    if t > PACK_FRAMES:  # frames are whole bytes: pack in pieces, so the uint64 temporaries stay small
        return np.concatenate([pack(c[:, i : i + PACK_FRAMES], bits) for i in range(0, t, PACK_FRAMES)])
    frames = np.ascontiguousarray(c.T, dtype=np.uint64)  # (T, K)
    per, nbytes = _group(k, bits)
    if per:
        padded = frames.reshape(t, k // per, per)  # (T, G, per)
        shifts = np.arange(per - 1, -1, -1, dtype=np.uint64) * np.uint64(bits)
        words = np.bitwise_or.reduce(padded << shifts, axis=2)  # (T, G): per*bits bits each
        byte_shifts = np.arange(nbytes - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
        out = ((words[..., None] >> byte_shifts) & np.uint64(0xFF)).astype(np.uint8)  # (T, G, nbytes)
        return out.reshape(-1)
    weights = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    bitarr = ((frames[..., None] >> weights) & np.uint64(1)).astype(np.uint8).reshape(t, k * bits)
    fb = frame_bytes(k, bits)
    padded_bits = np.zeros((t, fb * 8), dtype=np.uint8)
    padded_bits[:, : k * bits] = bitarr
    return np.packbits(padded_bits, axis=1).reshape(-1)


def unpack(data: np.ndarray, num_codebooks: int, bits: int) -> np.ndarray:
    """uint8 `(T * F,)` -> int64 codes `(K, T)`."""
    raw = np.asarray(data, dtype=np.uint8)
    fb = frame_bytes(num_codebooks, bits)
    if raw.size % fb:
        raise ValueError(f"{raw.size} bytes is not a whole number of {fb}-byte frames")
    t = raw.size // fb
    per, nbytes = _group(num_codebooks, bits)
    if per:
        groups = fb // nbytes
        b = raw.reshape(t, groups, nbytes).astype(np.uint64)
        byte_shifts = np.arange(nbytes - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
        words = np.bitwise_or.reduce(b << byte_shifts, axis=2)  # (T, G)
        shifts = np.arange(per - 1, -1, -1, dtype=np.uint64) * np.uint64(bits)
        codes = (words[..., None] >> shifts) & np.uint64((1 << bits) - 1)  # (T, G, per)
        codes = codes.reshape(t, groups * per)
    else:
        bitarr = np.unpackbits(raw.reshape(t, fb), axis=1)[:, : num_codebooks * bits]
        bitarr = bitarr.reshape(t, num_codebooks, bits).astype(np.int64)
        codes = bitarr @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))  # (T, K)
    return np.ascontiguousarray(codes.T, dtype=np.int64)  # (K, T)


def check_codes(codes: np.ndarray, num_codebooks: int, codebook_size: int) -> np.ndarray:
    """`codes` as an array of shape `(num_codebooks, T)` with every value in [0, codebook_size), else ValueError
    (the entropy coders' input check)."""
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[0] != num_codebooks:
        raise ValueError(f"codes must be (K={num_codebooks}, T), got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= codebook_size):
        raise ValueError(f"codes outside [0, {codebook_size})")
    return c
