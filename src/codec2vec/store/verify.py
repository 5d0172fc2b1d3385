"""`codec2vec verify`: recheck everything a token store holds and name what is damaged.

Beyond each container's own checksums: `meta.json` against the SHA-256 recorded in `contents.json`, every
recorded shard and label set present with its recorded SHA-256 and utterance count (a lost shard, or a lost
`shards/` folder, is named), and no foreign file in `shards/` or `labels/` (a file that is not a container of
the folder's kind, e.g. a shard copied into `labels/`). A committed file not yet recorded (a writer killed
between its rename and the record) is read and checked like the others. In every container each index field is
bounded (`container.check_records`), each record's CRC-32 checked, each entropy-coded record decoded whole, and
each shard's ids checked by the rules `tokenize` applies (`layout.id_problem`). Checksums show that nothing
changed by accident; anyone can recompute them, so a forged store that is consistent, bounded and decodable
passes (`verify` checks consistency, not authenticity).

`codec2vec verify --repair` is `repair.py`.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.errors import StoreError
from codec2vec.common.files import sha256_file
from codec2vec.store import packing
from codec2vec.store.container import check_records, decode_record, read_container_index, record_offsets, shard_model
from codec2vec.store.entropy import HuffmanModel
from codec2vec.store.handle import StoreHandle
from codec2vec.store.layout import (
    CONTENTS,
    LABEL_SUFFIX,
    SHARD_SUFFIX,
    check_meta_hash,
    check_shard,
    committed,
    id_problem,
    is_upgraded,
    read_contents,
)
from codec2vec.store.rans import RansModel

Model = HuffmanModel | RansModel | None


def verify_store(store: StoreHandle) -> list[str]:
    """Recheck meta, codebooks, every container's footer, index, payload hash, each record's CRC-32 and decoding,
    and the ids. Returns one line per problem (empty when sound)."""
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
            idx, model, fb = open_container(path, store.meta)
        except StoreError as e:
            problems.append(str(e))
            continue
        if idx is None:
            continue  # not a label container in labels/: named by foreign_files
        n = int(idx["payload_bytes"])
        body = np.memmap(path, dtype=np.uint8, mode="r")[:n] if n else np.zeros(0, np.uint8)  # the payload
        bad_crc, undecodable = record_failures(idx, body, model, fb, store.meta)
        if hashlib.sha256(body.data).hexdigest() != idx["payload_sha256"]:
            problems.append(
                f"{path}: damaged (payload checksum mismatch; utterances affected: "
                f"{', '.join(bad_crc) if bad_crc else 'none identified'})"
            )
        elif bad_crc:
            problems.append(f"{path}: damaged (utterances that fail their checksum: {', '.join(bad_crc)})")
        elif path in recorded and sha256_file(path) != recorded[path]:
            problems.append(f"{path}: sound, but not the file recorded in {CONTENTS} (SHA-256 differs)")
        problems += [f"{path}: utterance {u} cannot be decoded ({why})" for u, why in undecodable]
        if path.suffix == SHARD_SUFFIX:
            for uid in idx["entries"]["id"]:
                why = id_problem(uid)
                if why:
                    problems.append(f"{path}: {why} (`tokenize` never stores such an id)")
                if uid in seen:
                    problems.append(f"{path}: utterance {uid!r} is also stored in {seen[uid]}")
                seen[uid] = path
    return problems


def open_container(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, Model, int]:
    """A shard's or label set's index, entropy model and bytes per packed frame, every index field bounded
    (`check_records`); (None, None, 0) for a container in `labels/` that is not a label set. StoreError naming
    the file and the field otherwise."""
    idx = read_container_index(path)
    model: Model = None
    if path.suffix == SHARD_SUFFIX:
        check_shard(path, idx, meta)
        k, bits = int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"])
        model, fb = shard_model(path, idx, k, bits), packing.frame_bytes(k, bits)
    elif idx.get("kind") != "labels":
        return None, None, 0
    else:
        classes = idx.get("num_classes")
        if not isinstance(classes, int) or isinstance(classes, bool) or not 1 <= classes <= 1 << 31:
            raise StoreError(f"{path}: damaged index (field 'num_classes' is {classes!r})")
        fb = packing.frame_bytes(1, packing.bits_for(classes))
    check_records(path, idx, fb, model)
    return idx, model, fb


def record_failures(
    idx: dict[str, Any], body: np.ndarray, model: Model, frame_bytes: int, meta: dict[str, Any]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The records of a checked container (`open_container`) that fail their CRC-32 (ids, quoted), and the
    entropy-coded ones that pass it but cannot be decoded whole ((quoted id, reason))."""
    cols = idx["entries"]
    offs = record_offsets(idx, frame_bytes)
    k, bits = int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"])
    bad, undecodable = [], []
    for j, (uid, crc, frames) in enumerate(zip(cols["id"], cols["crc32"], cols["frames"])):
        raw = np.asarray(body[offs[j] : offs[j + 1]])
        if zlib.crc32(raw.data) != crc:
            bad.append(repr(uid))
        elif model is not None:
            try:
                decode_record(raw, model, k, bits, frames, 0, frames)
            except (ValueError, MemoryError) as e:
                undecodable.append((repr(uid), str(e) if isinstance(e, ValueError) else "too large to decode"))
    return bad, undecodable


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
