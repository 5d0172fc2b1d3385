"""`codec2vec verify`: recheck everything a token store holds and name what is damaged.

Beyond each container's own checksums: `meta.json` against the SHA-256 recorded in `contents.json`, every
recorded shard and label set present with its recorded SHA-256 and utterance count (a lost shard, or a lost
`shards/` folder, is named), and no foreign file in `shards/` or `labels/` (a file that is not a container of
the folder's kind, e.g. a shard copied into `labels/`). A committed file not yet recorded (a writer killed
between its rename and the record) is read and checked like the others.

`repair_store` (`codec2vec verify --repair`) makes a store whole again without losing the only copy of anything.

Under the store's writer lock:
1. hidden temporary files of killed writers are removed;
2. an utterance stored in more than one shard keeps one copy: the first whose CRC-32 checks (copies that
   fail their checksum are never chosen over a sound one); every other shard that holds a copy is rewritten
   atomically without it (records are copied byte for byte with the shard's own coding), or removed when
   nothing else is left in it;
3. foreign files in `shards/` and `labels/` (not containers of the folder's kind) are moved into
   `STORE/foreign/`, never deleted;
4. `contents.json` is rewritten from what is on disk (a format-1 store is upgraded to format 2); shards
   recorded but missing are dropped from the record and named (their utterances are lost: run `tokenize`
   again to re-encode them). An edited `meta.json` is not re-hashed: it is reported, and must be restored.
Returns one line per action taken.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.errors import StoreError
from codec2vec.files import atomic_write, sha256_file
from codec2vec.store import packing
from codec2vec.store.container import read_container_index, record_offsets, write_container
from codec2vec.store.layout import (
    CONTENTS,
    FORMAT_VERSION,
    LABEL_SUFFIX,
    SHARD_SUFFIX,
    check_meta_hash,
    check_shard,
    committed,
    empty_contents,
    file_record,
    is_upgraded,
    meta_bytes,
    read_contents,
    write_contents,
)
from codec2vec.store.writer import label_record, record_file, store_lock


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
        n = int(idx["payload_bytes"])
        body = np.memmap(path, dtype=np.uint8, mode="r")[:n].data if n else memoryview(b"")  # bytes of the payload
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


# --- repair ------------------------------------------------------------------------------------------


def repair_store(root: str | Path) -> list[str]:
    """Repair the store at `root` (see the module docstring); returns the actions taken."""
    from codec2vec.store.store import TokenStore

    store = TokenStore.open(root, check=False)
    root = store.root
    actions: list[str] = []
    with store_lock(root):
        for line in foreign_files(root):
            path = Path(line.split(": foreign file", 1)[0])
            dest = root / "foreign" / f"{path.parent.name}-{path.name}"
            dest.parent.mkdir(exist_ok=True)
            path.replace(dest)
            actions.append(f"moved foreign file {path} to {dest}")
        actions += _drop_duplicates(root, store.meta, store.frame_bytes)
        try:
            old = read_contents(root)
        except StoreError:
            old = None
        problem = check_meta_hash(root / "meta.json", store.meta, old)
        if problem and old is not None:
            actions.append(f"not repaired: {problem}; restore it (the record keeps the original's SHA-256)")
        new_meta = {**store.meta, "format_version": FORMAT_VERSION}
        doc = empty_contents(new_meta)
        if problem and old is not None:
            doc["meta_sha256"] = old["meta_sha256"]
        for p in committed(root / "shards", SHARD_SUFFIX):
            doc["shards"][p.name] = file_record(p, len(read_container_index(p)["entries"]["id"]))
        for p in committed(root / "labels", LABEL_SUFFIX):
            doc["labels"][p.name] = label_record(p)
        if old is not None and is_upgraded(store.meta):
            for kind in ("shards", "labels"):
                for name, rec in old[kind].items():
                    if name not in doc[kind]:
                        actions.append(f"{root / kind / name}: missing; {rec['utterances']} utterances lost")
        if old != doc:
            write_contents(root, doc)
            actions.append(f"rewrote {root / CONTENTS}")
        if not is_upgraded(store.meta):
            atomic_write(root / "meta.json", meta_bytes(new_meta))
            actions.append(f"upgraded {root} to format version {FORMAT_VERSION}")
    return actions


def _drop_duplicates(root: Path, meta: dict[str, Any], frame_bytes: int) -> list[str]:
    """Keep one sound copy of each utterance; rewrite the other shards holding a copy."""
    shards: list[tuple[Path, dict[str, Any], np.ndarray]] = []
    for p in committed(root / "shards", SHARD_SUFFIX):
        try:
            idx = read_container_index(p)
            check_shard(p, idx, meta)
        except StoreError:
            continue  # damaged or foreign shards are left for `verify` to name
        shards.append((p, idx, np.fromfile(p, dtype=np.uint8, count=int(idx["payload_bytes"]))))
    copies: dict[str, list[tuple[int, int, bool]]] = {}  # id -> (shard, record, sound)
    for s, (_, idx, body) in enumerate(shards):
        offs = record_offsets(idx, frame_bytes)
        for j, (uid, crc) in enumerate(zip(idx["entries"]["id"], idx["entries"]["crc32"])):
            copies.setdefault(uid, []).append((s, j, zlib.crc32(body[offs[j] : offs[j + 1]].tobytes()) == crc))
    drop: dict[int, set[int]] = {}
    for where in copies.values():
        if len(where) > 1:
            keep = next((w for w in where if w[2]), where[0])
            for s, j, _ in where:
                if (s, j) != keep[:2]:
                    drop.setdefault(s, set()).add(j)
    actions = []
    for s, rows in sorted(drop.items()):
        path, idx, body = shards[s]
        actions.append(_rewrite_without(path, idx, body, rows, frame_bytes))
    return actions


def _rewrite_without(path: Path, idx: dict[str, Any], body: np.ndarray, rows: set[int], frame_bytes: int) -> str:
    cols = idx["entries"]
    keep = [j for j in range(len(cols["id"])) if j not in rows]
    dropped = [cols["id"][j] for j in sorted(rows)]
    if not keep:
        try:  # drop the record first: a kill in between leaves a duplicate that the next repair removes
            if read_contents(path.parent.parent) is not None:
                record_file(path.parent.parent, "shards", path, None)
        except StoreError:  # a damaged record is rewritten whole at the end
            pass
        path.unlink()
        return f"removed {path}: every utterance in it ({', '.join(map(repr, dropped[:5]))}...) has a copy elsewhere"
    offs = record_offsets(idx, frame_bytes)
    payload = [body[offs[j] : offs[j + 1]].tobytes() for j in keep]
    index = {k: v for k, v in idx.items() if not k.startswith("payload_")}
    index["entries"] = {k: [v[j] for j in keep] for k, v in cols.items()}
    write_container(path, payload, index)
    return f"rewrote {path} without {len(dropped)} duplicate copies ({', '.join(map(repr, dropped[:5]))})"
