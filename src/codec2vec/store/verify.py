"""`codec2vec verify`: recheck everything a token store holds and name what is damaged.

Beyond each container's own checksums: `meta.json` against the SHA-256 recorded in `contents.json`, every
recorded shard and label set present with its recorded SHA-256 and utterance count (a lost shard, or a lost
`shards/` folder, is named), and no foreign file in `shards/` or `labels/` (a file that is not a container of
the folder's kind, e.g. a shard copied into `labels/`). A committed file not yet recorded (a writer killed
between its rename and the record) is read and checked like the others.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.errors import StoreError
from codec2vec.files import sha256_file
from codec2vec.store import packing
from codec2vec.store.container import read_container_index, record_offsets
from codec2vec.store.contents import CONTENTS, check_meta_hash, is_upgraded, read_contents
from codec2vec.store.layout import LABEL_SUFFIX, SHARD_SUFFIX, check_shard, committed


def verify_store(store: Any) -> list[str]:
    """Recheck meta, codebooks, every shard's footer, index, payload hash and each utterance's CRC-32.
    Returns one line per problem (empty when sound)."""
    problems: list[str] = []
    try:
        store.codebook_vectors()
    except (StoreError, OSError, KeyError) as e:
        problems.append(str(e))
    found, recorded = _check_record(store.root, store.meta)
    problems += found
    problems += foreign_files(store.root)
    seen: dict[str, Path] = {}
    containers = committed(store.root / "shards", SHARD_SUFFIX) + committed(store.root / "labels", LABEL_SUFFIX)
    for path in containers:
        try:
            idx = read_container_index(path)
            if path.suffix == SHARD_SUFFIX:
                check_shard(path, idx, store.meta)
            elif idx.get("kind") != "labels":
                continue  # named by foreign_files
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
        elif path in recorded and sha256_file(path) != recorded[path]:
            problems.append(f"{path}: sound, but not the file recorded in {CONTENTS} (SHA-256 differs)")
        if path.suffix == SHARD_SUFFIX:
            for uid in idx["entries"]["id"]:
                if uid in seen:
                    problems.append(f"{path}: utterance {uid!r} is also stored in {seen[uid]}")
                seen[uid] = path
    return problems


def _check_record(root: Path, meta: dict[str, Any]) -> tuple[list[str], dict[Path, str]]:
    """`meta.json` against `contents.json`, and the recorded shards and label sets present; returns the
    problems and the recorded SHA-256 of each file present."""
    try:
        contents = read_contents(root)
    except StoreError as e:
        return [str(e)], {}
    problem = check_meta_hash(root / "meta.json", meta, contents)
    problems = [problem] if problem else []
    if contents is None or not is_upgraded(meta):
        return problems, {}
    if contents["shards"] and not (root / "shards").is_dir():
        problems.append(f"{root / 'shards'}: folder missing ({len(contents['shards'])} shards recorded)")
        return problems, {}
    recorded = {}
    for kind in ("shards", "labels"):
        for name, rec in contents[kind].items():
            path = root / kind / name
            if not path.is_file():
                problems.append(f"{path}: missing (recorded in {CONTENTS} with {rec['utterances']} utterances)")
            recorded[path] = rec["sha256"]
    return problems, recorded


def foreign_files(root: Path) -> list[str]:
    """Files in `shards/` and `labels/` that are not containers of the folder's kind (hidden temporary files
    of a writer aside)."""
    problems = []
    for kind, suffix, want in (("shards", SHARD_SUFFIX, "shard"), ("labels", LABEL_SUFFIX, "labels")):
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            why = "" if path.is_file() and path.suffix == suffix else f"not a {suffix} file"
            if not why:
                try:
                    found = read_container_index(path).get("kind")
                    why = "" if found == want else f"a {found} container, not {want}"
                except StoreError:
                    why = ""  # damaged: named by the container checks
            if why:
                problems.append(f"{path}: foreign file in {kind}/ ({why}; `verify --repair` moves it out)")
    return problems
