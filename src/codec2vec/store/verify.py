"""`codec2vec verify`: recheck everything a token store holds and name what is damaged."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.errors import StoreError
from codec2vec.store import packing
from codec2vec.store.container import read_container_index, record_offsets
from codec2vec.store.layout import LABEL_SUFFIX, SHARD_SUFFIX, check_shard, committed


def verify_store(store: Any) -> list[str]:
    """Recheck meta, codebooks, every shard's footer, index, payload hash and each utterance's CRC-32.
    Returns one line per problem (empty when sound)."""
    problems: list[str] = []
    try:
        store.codebook_vectors()
    except (StoreError, OSError, KeyError) as e:
        problems.append(str(e))
    seen: dict[str, Path] = {}
    containers = committed(store.root / "shards", SHARD_SUFFIX) + committed(store.root / "labels", LABEL_SUFFIX)
    for path in containers:
        try:
            idx = read_container_index(path)
            if path.suffix == SHARD_SUFFIX:
                check_shard(path, idx, store.meta)
        except StoreError as e:
            problems.append(str(e))
            continue
        body = np.memmap(path, dtype=np.uint8, mode="r")[: idx["payload_bytes"]] if idx["payload_bytes"] else b""
        if hashlib.sha256(body).hexdigest() != idx["payload_sha256"]:
            cols = idx["entries"]
            fb = (
                store.frame_bytes
                if path.suffix == SHARD_SUFFIX
                else packing.frame_bytes(1, packing.bits_for(idx["num_classes"]))
            )
            offs = record_offsets(idx, fb)
            bad = [
                uid
                for uid, off, end, crc in zip(cols["id"], offs, offs[1:], cols["crc32"])
                if zlib.crc32(body[off:end]) != crc
            ]
            problems.append(
                f"{path}: damaged (payload checksum mismatch; utterances affected: "
                f"{', '.join(bad) if bad else 'none identified'})"
            )
        if path.suffix == SHARD_SUFFIX:
            for uid in idx["entries"]["id"]:
                if uid in seen:
                    problems.append(f"{path}: utterance {uid!r} is also stored in {seen[uid]}")
                seen[uid] = path
    return problems
