"""Secret keys and what is derived from them: keyed utterance ids and per-codebook permutations of code indices.

A key is 32 random bytes (`secrets.token_bytes`), kept as 64 hex digits in a file that only its owner may read
(created with mode 0600; a key file that others can read is refused). Everything below is derived from it with
HMAC-SHA256 (RFC 2104), each use under its own label, so one key never gives the same bytes to two purposes:

- `keyed_id(key, id)`: a private store's utterance id, `HMAC(key, "id" || id)` as 32 hex digits (128 bits):
  stable across runs (tokenize stays resumable) and unlinkable to the name without the key.
- `permutations(key, K, V)`: one permutation of `range(V)` per codebook level, by Fisher-Yates shuffling with
  an HMAC-DRBG-like stream (`HMAC(key, "perm" || k || counter)`) and rejection sampling (no modulo bias).
  `scramble(codes, perms)` maps code v of level k to `perms[k][v]`; `unscramble` is its exact inverse.
- `key_check(key)`: a public fingerprint, `HMAC(key, "check")`, stored in a scrambled store's meta so that the
  wrong key is refused instead of silently giving garbage. It reveals nothing usable about the key (256 bits).

Shapes: codes `(K, T)` or `(B, K, T)` integer arrays/tensors, level axis -2; permutations `(K, V)` int64.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import Codec2VecError
from codec2vec.common.files import atomic_file

KEY_BYTES = 32
SCHEME = "hmac-sha256-fisher-yates-v1"


class PrivacyError(Codec2VecError):
    """A key file that is missing, malformed, readable by others, or not the store's key."""


def load_key(path: str | os.PathLike[str], *, create: bool = False) -> bytes:
    """The key in `path` (64 hex digits); with `create`, a new random key is written there first (mode 0600)
    when the file does not exist."""
    p = Path(path)
    if not p.exists():
        if not create:
            raise PrivacyError(f"{p}: no such key file")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_secret(p, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PrivacyError(f"{p}: key file is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    text = p.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise PrivacyError(f"{p}: not a codec2vec key (expected {2 * KEY_BYTES} hex digits)")
    return key


def write_secret(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `path` atomically with mode 0600, set before any byte is written (keys, id maps)."""
    with atomic_file(path) as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


def _mac(key: bytes, label: bytes, msg: bytes) -> bytes:
    return hmac.new(key, label + b"\x00" + msg, hashlib.sha256).digest()


def keyed_id(key: bytes, uid: str) -> str:
    """A private store's id for utterance `uid`: 32 hex digits of HMAC-SHA256."""
    return _mac(key, b"id", uid.encode("utf-8")).hex()[:32]


def key_check(key: bytes) -> str:
    """Public fingerprint of a key (to refuse a wrong key); 16 hex digits."""
    return _mac(key, b"check", b"").hex()[:16]


def _uniform_stream(key: bytes, level: int) -> Iterator[int]:
    counter = 0
    while True:
        block = _mac(key, b"perm", level.to_bytes(4, "big") + counter.to_bytes(8, "big"))
        for i in range(0, len(block), 4):
            yield int.from_bytes(block[i : i + 4], "big")
        counter += 1


def permutation(key: bytes, level: int, size: int) -> np.ndarray:
    """Fisher-Yates shuffle of `range(size)` driven by HMAC(key, level, counter); `(size,)` int64."""
    perm = np.arange(size, dtype=np.int64)
    stream = _uniform_stream(key, level)
    for i in range(size - 1, 0, -1):
        bound = i + 1
        limit = (1 << 32) - ((1 << 32) % bound)  # reject the top sliver: an unbiased draw in [0, bound)
        r = next(stream)
        while r >= limit:
            r = next(stream)
        j = r % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def permutations(key: bytes, num_codebooks: int, codebook_size: int) -> np.ndarray:
    """One secret permutation per level: `(K, V)` int64, row k maps clear code v to scrambled code perm[k, v]."""
    return np.stack([permutation(key, k, codebook_size) for k in range(num_codebooks)])


def inverse(perms: np.ndarray) -> np.ndarray:
    """`(K, V)` -> the inverse permutations `(K, V)`."""
    inv = np.empty_like(perms)
    rows = np.arange(perms.shape[0])[:, None]
    inv[rows, perms] = np.arange(perms.shape[1])[None, :]
    return inv


def _apply(codes: np.ndarray | Tensor, table: np.ndarray) -> np.ndarray | Tensor:
    k = codes.shape[-2]
    if isinstance(codes, Tensor):
        t = torch.from_numpy(table[:k]).to(codes.device)  # (K, V)
        levels = torch.arange(k, device=codes.device)[:, None]  # (K, 1)
        return t[levels, codes.long()]
    return table[:k][np.arange(k)[:, None], np.asarray(codes, dtype=np.int64)]


def scramble(codes: np.ndarray | Tensor, perms: np.ndarray) -> np.ndarray | Tensor:
    """Clear codes `(..., K, T)` -> scrambled codes (level k's code v becomes perms[k, v])."""
    return _apply(codes, perms)


def unscramble(codes: np.ndarray | Tensor, perms: np.ndarray) -> np.ndarray | Tensor:
    """The exact inverse of `scramble`."""
    return _apply(codes, inverse(perms))
