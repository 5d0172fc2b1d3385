"""The folder layout of a token store and the checks that keep it one store (see `store.py` for the format).

`committed(folder, suffix)` lists the committed container files (never a writer's hidden temporary file);
`check_meta` checks that `meta.json` agrees with itself; `check_shard` that a shard belongs to the store's
codec; `check_free` / `clean_builds` guard a new store's place (see `store.building`); `id_problem` says
why a string cannot be an utterance id (ids become file names under `decode --out`: safe relative paths).

`contents.json` (format version 2) records what a store holds, so that a lost shard or an edited `meta.json`
is noticed. It lists every committed shard and label set with its SHA-256, size and utterance count, holds the SHA-256 of `meta.json`, and carries a SHA-256 of itself (`sha256`, over the
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
import os
import shutil
from pathlib import Path
from typing import Any

from codec2vec.codecs.base import config_hash
from codec2vec.common.errors import StoreError
from codec2vec.common.files import TMP_DIR_MARK, atomic_write, exclusive_lock, fsync_dir, sha256_file
from codec2vec.store import packing
from codec2vec.store.container import shard_model

FORMAT = "codec2vec-token-store"
FORMAT_VERSION = 2  # 2: contents.json records the shards, label sets and meta.json's SHA-256
SHARD_SUFFIX = ".c2s"
LABEL_SUFFIX = ".c2l"


MAX_ID_PART_BYTES = 240  # a file name is at most 255 bytes; leave room for the extension `decode` adds


def id_problem(uid: str) -> str | None:
    """Why `uid` cannot be an utterance id (None when it can): ids are relative paths of '/'-separated parts,
    none empty, '.' or '..', no backslash or control character, each part at most 240 bytes. Non-UTF-8 file
    names are accepted (their undecodable bytes are kept as surrogate escapes)."""
    if not isinstance(uid, str) or not uid:
        return "empty id"
    if uid.startswith("/"):
        return f"id {uid!r} is an absolute path"
    if any(ord(c) < 32 or ord(c) == 127 for c in uid):
        return f"id {uid!r} contains a control character"
    if "\\" in uid:
        return f"id {uid!r} contains a backslash"
    for part in uid.split("/"):
        if part in ("", ".", ".."):
            return f"id {uid!r} has an empty, '.' or '..' part"
        if len(part.encode("utf-8", "surrogateescape")) > MAX_ID_PART_BYTES:
            return f"id {uid!r} has a part longer than {MAX_ID_PART_BYTES} bytes"
    return None


def check_free(root: Path) -> None:
    """`root` may become a new store: absent or empty (dot-files aside)."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: exists and is not a folder")
    if (root / "meta.json").exists():
        raise StoreError(f"{root}: a token store already exists here")
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root}: folder is not empty and is not a token store")


def publish(tmp: Path, root: Path) -> None:
    """Move a store built in `tmp` to `root` in one rename (for builders that do not use `store.building`)."""
    check_free(root)
    if root.exists():
        shutil.rmtree(root)  # empty but for dot-files
    os.replace(tmp, root)
    fsync_dir(root.parent)


def clean_builds(root: Path, min_age: float = 1.0) -> None:
    """Remove hidden `.NAME.tmp-*` folders beside `root` that a killed or failed create or merge left: those
    whose `.lock` nobody holds (a build holds it from its first instant to its rename) and that have not
    changed for `min_age` seconds (the instant between making the folder and locking it)."""
    import time

    parent = root.parent
    if not parent.is_dir():
        return
    prefixes = (f".{root.name}{TMP_DIR_MARK}", f".{root.name}.merge-")  # the second: older codec2vec's merge
    for p in parent.iterdir():
        if not p.name.startswith(prefixes) or not p.is_dir() or time.time() - p.stat().st_mtime < min_age:
            continue
        try:
            with exclusive_lock(p / ".lock", busy=BlockingIOError()):  # held: a build in progress
                shutil.rmtree(p, ignore_errors=True)
        except (BlockingIOError, FileNotFoundError, NotADirectoryError):
            continue


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """meta.json agrees with itself: the codec hash matches its config, K and V match the codebook table."""

    try:
        codec = meta["codec"]
        if config_hash(codec["config"]) != codec["config_hash"]:
            raise StoreError(f"{path}: damaged (codec config does not match its hash)")
        if list(meta["codebooks"]["shape"][:2]) != [int(codec["num_codebooks"]), int(codec["codebook_size"])]:
            raise StoreError(f"{path}: damaged (K, V disagree with the codebook table)")
        if int(meta["bits_per_code"]) != packing.bits_for(int(codec["codebook_size"])):
            raise StoreError(f"{path}: damaged (bits_per_code disagrees with V)")
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: damaged ({type(e).__name__}: {e})") from None


def check_shard(path: Path, index: dict[str, Any], meta: dict[str, Any]) -> None:
    """A shard belongs to this store's codec (not copied in from another store), and its coding can be decoded
    here (a known coding; a model for this K and V; for rANS, of this format version)."""
    if index.get("codec_hash") != meta["codec"]["config_hash"]:
        raise StoreError(
            f"{path}: holds codes of codec config {index.get('codec_hash')}, "
            f"not this store's {meta['codec']['config_hash']}"
        )
    shard_model(path, index, int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"]))


def committed(folder: Path, suffix: str) -> list[Path]:
    """Committed container files in `folder`, sorted. Temporary files of an unfinished (or killed) write
    start with '.' and are never part of the store (pathlib's glob would match them)."""
    return sorted(p for p in folder.glob("*" + suffix) if not p.name.startswith("."))


# --- contents.json: what the store holds ------------------------------------------------------------

CONTENTS = "contents.json"
CONTENTS_VERSION = 2  # = FORMAT_VERSION when contents.json appeared


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
    except (OSError, ValueError):
        raise StoreError(f"{path}: damaged (unreadable)") from None
    if not isinstance(doc, dict):
        raise StoreError(f"{path}: damaged (a JSON {type(doc).__name__}, not an object)")
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if doc.get("sha256") != _self_hash(body):
        raise StoreError(f"{path}: damaged (checksum mismatch)")
    problem = _contents_problem(body)
    if problem:
        raise StoreError(f"{path}: damaged ({problem})")
    return body


def _contents_problem(body: dict[str, Any]) -> str | None:
    """What is malformed in a record whose own checksum holds (a forged one): None when each key has its type."""
    for key in ("meta_sha256", "meta_sha256_pending"):
        if (key in body or key == "meta_sha256") and not isinstance(body.get(key), str):
            return f"key {key!r} missing or not a string"
    for kind in ("shards", "labels"):
        files = body.get(kind)
        if not isinstance(files, dict):
            return f"key {kind!r} missing or not an object"
        for name, rec in files.items():
            fields = (rec.get("sha256"), rec.get("bytes"), rec.get("utterances")) if isinstance(rec, dict) else ()
            if len(fields) != 3 or not isinstance(fields[0], str) or not all(_count(x) for x in fields[1:]):
                return f"the record of {kind}/{name} is not {{sha256, bytes, utterances}}"
    return None


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


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
    if hashlib.sha256(raw).hexdigest() in (contents["meta_sha256"], contents.get("meta_sha256_pending")):
        return None  # (pending: `TokenStore.update_meta` was between its two writes)
    if version < CONTENTS_VERSION:
        upgraded = meta_bytes({**meta, "format_version": CONTENTS_VERSION})
        if hashlib.sha256(upgraded).hexdigest() == contents["meta_sha256"]:
            return None
    return f"{meta_path}: edited or damaged (its SHA-256 does not match the one recorded in {CONTENTS})"


def is_upgraded(meta: dict[str, Any]) -> bool:
    return int(meta.get("format_version", 1)) >= CONTENTS_VERSION
