"""`codec2vec verify --repair`: make a store whole again without losing the only copy of anything.

Under the store's writer lock:
1. hidden temporary files of killed writers are removed;
2. foreign files in `shards/` and `labels/` (not containers of the folder's kind), and containers that cannot be
   read or belong to another codec (a damaged footer or index, a field out of bounds), are moved into
   `STORE/foreign/`, never deleted (a name already there gets a numbered suffix);
3. an utterance stored more than once keeps one copy, the first that passes its CRC-32 and decodes. Only copies
   with the same codes are duplicates: they are dropped. A copy with the same id but other codes (two corpora
   with the same file names, a shard copied in from another store) or one that fails its checks is moved, byte
   for byte in its shard's coding, into a shard-format container in `STORE/foreign/` (written before the shard
   is rewritten without it), and named;
4. `contents.json` is rewritten from what is on disk (a format-1 store is upgraded to format 2). A file whose
   SHA-256 differs from its record (or that is not recorded) is recorded only if every record in it passes its
   CRC-32 and decodes: a changed shard whose records fail is never re-blessed, its old record is kept and it is
   named. Shards recorded but missing are dropped from the record and named (their utterances are lost: run
   `tokenize` again to re-encode them). An edited `meta.json` is not re-hashed: it is reported, and must be
   restored.
Returns one line per action taken.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_write
from codec2vec.store import packing
from codec2vec.store.container import decode_record, record_offsets, write_container
from codec2vec.store.handle import StoreHandle
from codec2vec.store.labels import fingerprint
from codec2vec.store.layout import (
    CONTENTS,
    FORMAT_VERSION,
    LABEL_SUFFIX,
    SHARD_SUFFIX,
    check_meta_hash,
    committed,
    empty_contents,
    file_record,
    is_upgraded,
    meta_bytes,
    read_contents,
    write_contents,
)
from codec2vec.store.verify import Model, foreign_files, open_container, record_failures
from codec2vec.store.writer import record_file, store_lock


def repair_store(store: StoreHandle) -> list[str]:
    """Repair an open store (`TokenStore.repair`; opened without checks, as `verify` opens it: see the module
    docstring); returns the actions taken."""
    root, meta = store.root, store.meta
    actions: list[str] = []
    with store_lock(root):
        for line in foreign_files(root):
            path = Path(line.split(": foreign file", 1)[0])
            dest = _foreign_dest(root, f"{path.parent.name}-{path.name}")
            path.replace(dest)
            actions.append(f"moved foreign file {path} to {dest}")
        try:
            old = read_contents(root)
        except StoreError:
            old = None
        problem = check_meta_hash(root / "meta.json", meta, old)
        if problem and old is not None:  # an edited meta.json: shards of "another codec" may be this store's
            return [*actions, f"not repaired: {problem}; restore it (the record keeps the original's SHA-256)"]
        moved = _move_unreadable(root, meta)
        actions += moved.values()
        mended = _drop_duplicates(root, meta)
        actions += mended.values()
        new_meta = {**meta, "format_version": FORMAT_VERSION}
        doc = empty_contents(new_meta)
        previous = old if old is not None and is_upgraded(meta) else {"shards": {}, "labels": {}}
        for kind, suffix in (("shards", SHARD_SUFFIX), ("labels", LABEL_SUFFIX)):
            for p in committed(root / kind, suffix):
                line = _record(p, kind, meta, previous[kind].get(p.name), doc)
                # a shard rewritten for duplicates says so above; its record line still reports failing records
                actions += [line] if line and not (p in mended and line.startswith("recorded ")) else []
            for name, rec in previous[kind].items():
                gone = root / kind / name
                if not gone.is_file() and gone not in moved and gone not in mended:  # (removed: stored elsewhere)
                    actions.append(f"{gone}: missing; {rec['utterances']} utterances lost")
        if old != doc:
            write_contents(root, doc)
            actions.append(f"rewrote {root / CONTENTS}")
        if not is_upgraded(meta):
            atomic_write(root / "meta.json", meta_bytes(new_meta))
            store.meta = new_meta
            actions.append(f"upgraded {root} to format version {FORMAT_VERSION}")
    return actions


def _move_unreadable(root: Path, meta: dict[str, Any]) -> dict[Path, str]:
    """Move containers that cannot be read, belong to another codec or have fields out of bounds to `foreign/`;
    returns each moved file's old path and the action's line."""
    actions = {}
    for path in committed(root / "shards", SHARD_SUFFIX) + committed(root / "labels", LABEL_SUFFIX):
        try:
            open_container(path, meta)
        except StoreError as e:
            dest = _foreign_dest(root, f"{path.parent.name}-{path.name}")
            path.replace(dest)
            why = str(e).removeprefix(f"{path}: ")
            actions[path] = f"moved {path} to {dest} ({why}; what it holds is no longer in the store)"
    return actions


def _foreign_dest(root: Path, name: str) -> Path:
    """A free path for `name` in `STORE/foreign/` (`name.1`, `name.2`, ... when taken: nothing is overwritten)."""
    folder = root / "foreign"
    folder.mkdir(exist_ok=True)
    dest, n = folder / name, 0
    while dest.exists() or dest.is_symlink():
        n += 1
        dest = folder / f"{name}.{n}"
    return dest


def _record(path: Path, kind: str, meta: dict[str, Any], old: dict[str, Any] | None, doc: dict[str, Any]) -> str:
    """Put a committed container's record into `doc`: its old record when unchanged, a new one when every record
    in it checks, else its old record (if any) kept and the file named."""
    idx, model, fb = open_container(path, meta)
    assert idx is not None  # containers that are not of their folder's kind were moved out
    extra = {"fingerprint": fingerprint(idx)} if kind == "labels" else {}
    new = file_record(path, len(idx["entries"]["id"]), **extra)
    if old is not None and old.get("sha256") == new["sha256"]:
        doc[kind][path.name] = old
        return ""
    n = int(idx["payload_bytes"])
    body = np.fromfile(path, dtype=np.uint8, count=n)
    bad, undecodable = record_failures(idx, body, model, fb, meta)
    if bad or undecodable:
        failing = ", ".join(bad + [u for u, _ in undecodable][:5])
        if old is not None:
            doc[kind][path.name] = old
        state = "changed since it was recorded" if old is not None else "not recorded"
        return (
            f"not repaired: {path}: {state}, and utterances in it fail their checks ({failing}); restore it from a "
            f"copy, or move it out of {kind}/"
        )
    doc[kind][path.name] = new
    return f"recorded {path} (changed since it was recorded; every record in it checks)" if old is not None else ""


def _codes(shard: tuple[Path, dict[str, Any], Model, np.ndarray], j: int, meta: dict[str, Any]) -> np.ndarray | None:
    """Record `j`'s codes `(K, T)`, or None when it fails its CRC-32 or cannot be decoded."""
    _, idx, model, body = shard
    offs = record_offsets(idx, _frame_bytes(meta))
    raw = body[offs[j] : offs[j + 1]]
    cols = idx["entries"]
    if zlib.crc32(raw.tobytes()) != cols["crc32"][j]:
        return None
    k, bits = int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"])
    try:
        return decode_record(raw, model, k, bits, cols["frames"][j], 0, cols["frames"][j])
    except (ValueError, MemoryError):
        return None


def _frame_bytes(meta: dict[str, Any]) -> int:
    return packing.frame_bytes(int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"]))


def _drop_duplicates(root: Path, meta: dict[str, Any]) -> dict[Path, str]:
    """Keep one sound copy of each utterance: drop copies with the same codes, move the others to `foreign/`;
    returns each shard rewritten (or removed) and the action's line."""
    shards: list[tuple[Path, dict[str, Any], Model, np.ndarray]] = []
    for p in committed(root / "shards", SHARD_SUFFIX):
        idx, model, _ = open_container(p, meta)  # those that fail were moved out
        assert idx is not None
        shards.append((p, idx, model, np.fromfile(p, dtype=np.uint8, count=int(idx["payload_bytes"]))))
    copies: dict[str, list[tuple[int, int]]] = {}  # id -> (shard, record)
    for s, (_, idx, _, _) in enumerate(shards):
        for j, uid in enumerate(idx["entries"]["id"]):
            copies.setdefault(uid, []).append((s, j))
    drop: dict[int, set[int]] = {}
    move: dict[int, set[int]] = {}
    for where in copies.values():
        if len(where) < 2:
            continue
        codes = [_codes(shards[s], j, meta) for s, j in where]
        keep = next((i for i, c in enumerate(codes) if c is not None), 0)
        for i, (s, j) in enumerate(where):
            kept, this = codes[keep], codes[i]
            if i != keep:
                same = kept is not None and this is not None and np.array_equal(kept, this)
                (drop if same else move).setdefault(s, set()).add(j)
    actions = {}
    for s in sorted(set(drop) | set(move)):
        path, idx, _, body = shards[s]
        moved = _move_out(root, path, idx, body, move[s], meta) + "; " if move.get(s) else ""
        actions[path] = moved + _rewrite_without(path, idx, body, drop.get(s, set()) | move.get(s, set()), meta)
    return actions


def _subset(idx: dict[str, Any], body: np.ndarray, rows: list[int], meta: dict[str, Any]) -> tuple[list[bytes], dict]:
    """The records `rows` of a shard, byte for byte, and an index of the same coding for them."""
    offs = record_offsets(idx, _frame_bytes(meta))
    payload = [body[offs[j] : offs[j + 1]].tobytes() for j in rows]
    index = {k: v for k, v in idx.items() if not k.startswith("payload_")}
    index["entries"] = {k: [v[j] for j in rows] for k, v in idx["entries"].items()}
    return payload, index


def _move_out(root: Path, path: Path, idx: dict[str, Any], body: np.ndarray, rows: set[int], meta: dict) -> str:
    """Write records `rows` of shard `path` to a container in `foreign/` (before the shard loses them)."""
    dest = _foreign_dest(root, f"{path.stem}-collisions{SHARD_SUFFIX}")
    write_container(dest, *_subset(idx, body, sorted(rows), meta))
    ids = [idx["entries"]["id"][j] for j in sorted(rows)]
    return (
        f"moved {len(ids)} utterances from {path} to {dest}: their ids are also stored with other codes, or they "
        f"fail their checks ({', '.join(map(repr, ids[:5]))}{'...' if len(ids) > 5 else ''}); give them other ids "
        "and tokenize them again to keep both"
    )


def _rewrite_without(path: Path, idx: dict[str, Any], body: np.ndarray, rows: set[int], meta: dict[str, Any]) -> str:
    cols = idx["entries"]
    keep = [j for j in range(len(cols["id"])) if j not in rows]
    gone = [cols["id"][j] for j in sorted(rows)]
    if not keep:
        try:  # drop the record first: a kill in between leaves a duplicate that the next repair removes
            if read_contents(path.parent.parent) is not None:
                record_file(path.parent.parent, "shards", path, None)
        except StoreError:  # a damaged record is rewritten whole at the end
            pass
        path.unlink()
        return f"removed {path}: every utterance in it ({', '.join(map(repr, gone[:5]))}...) is stored elsewhere"
    write_container(path, *_subset(idx, body, keep, meta))
    return f"rewrote {path} without {len(gone)} copies stored elsewhere ({', '.join(map(repr, gone[:5]))})"
