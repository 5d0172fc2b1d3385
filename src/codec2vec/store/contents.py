"""`STORE/contents.json`: what a token store holds, so that a lost shard or an edited `meta.json` is noticed.

Format version 2 of the store. The record lists every committed shard and label set with its SHA-256, size
and utterance count, holds the SHA-256 of `meta.json`, and carries a SHA-256 of itself (`sha256`, over the
canonical JSON of the other keys). It is rewritten atomically under the store's writer lock after each
shard or label set is renamed into place. The rename stays the commit: a writer killed between the rename
and the record leaves a committed file that is not yet listed; readers include it (it verifies by its own
checksums) and the next writer records it.

Old stores (format version 1, no `contents.json`) are read as before and upgraded on their first write (or
by `codec2vec verify --repair`): the record is written first, then `meta.json` with `format_version: 2`, so
an upgrade killed in between is recognised (the record matches the meta that was about to be written).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codec2vec.errors import StoreError
from codec2vec.files import atomic_write, sha256_file

CONTENTS = "contents.json"
CONTENTS_VERSION = 2


def meta_bytes(meta: dict[str, Any]) -> bytes:
    """The exact bytes `meta.json` is written as."""
    return json.dumps(meta, indent=2).encode()


def _self_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def empty_contents(meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta_sha256": hashlib.sha256(meta_bytes(meta)).hexdigest(), "shards": {}, "labels": {}}


def read_contents(root: Path) -> dict[str, Any] | None:
    """The store's record (None when there is none: a format-1 store); StoreError if it is damaged."""
    path = root / CONTENTS
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        body = {k: v for k, v in doc.items() if k != "sha256"}
        ok = isinstance(doc, dict) and doc.get("sha256") == _self_hash(body)
        _ = (body["meta_sha256"], dict(body["shards"]), dict(body["labels"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise StoreError(f"{path}: damaged (unreadable)") from None
    if not ok:
        raise StoreError(f"{path}: damaged (checksum mismatch)")
    return body


def write_contents(root: Path, contents: dict[str, Any]) -> None:
    body = {k: v for k, v in contents.items() if k != "sha256"}
    atomic_write(root / CONTENTS, json.dumps({**body, "sha256": _self_hash(body)}, indent=1, sort_keys=True) + "\n")


def file_record(path: Path, utterances: int, **extra: Any) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "utterances": int(utterances), **extra}


def check_meta_hash(meta_path: Path, meta: dict[str, Any], contents: dict[str, Any] | None) -> str | None:
    """None when `meta.json` is covered by the record (or the store is format 1 without one); else the problem.

    A format-1 meta with a record that matches the same meta at format 2 is an upgrade killed half-way."""
    raw = meta_path.read_bytes()
    version = int(meta.get("format_version", 1))
    if contents is None:
        return (
            f"{meta_path.parent / CONTENTS}: missing (format {version} stores record their contents)"
            if (version >= CONTENTS_VERSION)
            else None
        )
    if hashlib.sha256(raw).hexdigest() == contents["meta_sha256"]:
        return None
    if version < CONTENTS_VERSION:
        upgraded = meta_bytes({**meta, "format_version": CONTENTS_VERSION})
        if hashlib.sha256(upgraded).hexdigest() == contents["meta_sha256"]:
            return None
    return f"{meta_path}: edited or damaged (its SHA-256 does not match the one recorded in {CONTENTS})"


def is_upgraded(meta: dict[str, Any]) -> bool:
    return int(meta.get("format_version", 1)) >= CONTENTS_VERSION
