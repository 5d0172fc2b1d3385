"""The token store: a corpus of codec codes on disk, compact, verified, randomly accessible.

Layout of a store directory::

    meta.json               format version, codec (name, config + hash, sample rate, frame rate, K, V), bits
    codebooks.safetensors   the codec's codebook vectors (K, V, D), so training never needs the codec
                            (exact-rank factors where that is much smaller: `codebooks.py`)
    shards/000000.c2s ...   packed codes of many utterances + their index, one file each
    labels/<name>.c2l       optional frame-level labels (k-means, probe labels) on the same frame grid
    rejects.jsonl           inputs `tokenize` refused, with the reason

A shard (and a label file) is one container file: `[payload][zlib JSON index][footer]`. The payload holds
each utterance's codes packed at their exact bit width (`packing.py`) or, when the store's coding is
"auto" (the default) and it saves at least 1%, entropy-coded with per-level order-0 models fitted on that
shard: blocked rANS (`rans.py`; Lyra codes carry ~3.5 bits of entropy in 4 bits), whose restart points let
a crop decode only its blocks (Huffman shards of earlier versions, `entropy.py`, are still read); the index
lists, per utterance,
id, frames, CRC-32 of its bytes, seconds, source path and bytes, and free metadata; the
40-byte footer holds a magic tag, the index's offset, length and CRC-32, and the payload's CRC-32 is
inside the index with its SHA-256. A shard is written to a temporary name, fsynced, and renamed into
place, so it either exists whole or not at all: this rename is the commit. Reads are memory-mapped and
check the utterance's CRC-32 before decoding; `verify()` rechecks everything.

Shapes: `store[id] -> LongTensor (K, T)`; `store.read(id, s, e) -> (K, e - s)`; labels `(T,)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from codec2vec.codecs.base import Codec, CodecInfo, codec_info
from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_dir, atomic_write
from codec2vec.store import packing, rans
from codec2vec.store.codebooks import pack_codebooks, unpack_codebooks
from codec2vec.store.container import PackedRecords, read_container_index
from codec2vec.store.labels import LabelSet, check_label_name, fingerprint, write_label_set
from codec2vec.store.layout import (
    CONTENTS,
    FORMAT,
    FORMAT_VERSION,
    LABEL_SUFFIX,
    SHARD_SUFFIX,
    check_free,
    check_meta,
    check_meta_hash,
    check_shard,
    clean_builds,
    committed,
    empty_contents,
    is_upgraded,
    meta_bytes,
    read_contents,
    write_contents,
)
from codec2vec.store.repair import repair_store
from codec2vec.store.verify import verify_store
from codec2vec.store.writer import ShardWriter, label_record, open_writer, record_all, record_file, store_lock


class TokenStore:
    """A token store on disk. Open with `TokenStore.open(path)`, make with `TokenStore.create(...)`."""

    def __init__(self, root: Path, meta: dict[str, Any], packed: PackedRecords) -> None:
        self.root = root
        self.meta = meta
        self.codec = CodecInfo.from_dict(meta["codec"])
        self.bits = int(meta["bits_per_code"])
        self._packed = packed

    @property
    def coding(self) -> str:
        """How new shards are written (`STORE_CODINGS`)."""
        return str(self.meta.get("coding", "packed"))

    # construction -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], info: CodecInfo, codebook_vectors: Tensor, *, coding: str = "auto"
    ) -> TokenStore:
        """A new, empty store for codes of `info`'s codec; `codebook_vectors` is `(K, V, D)`. `coding`: "auto"
        entropy-codes a shard (rANS) when that makes it at least 1% smaller; "packed" keeps exact-width bit
        packing (reads a few times faster, no smaller); "rans" forces rANS (`writer.py`)."""
        root = Path(path)
        check_free(root)
        meta, blob = new_store_meta(info, codebook_vectors, coding)
        with building(root) as tmp:  # built in a hidden folder beside `root`, then renamed into place
            write_new_store(tmp, meta, blob)
        return cls.open(root)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, check: bool = True) -> TokenStore:
        """Open an existing store. With `check`, a damaged shard index, a shard recorded in `contents.json` but
        missing, or an edited `meta.json` raise `StoreError` naming the file; without it (for `verify`),
        damaged shards are left out and reported by `verify()`."""
        root = Path(path)
        meta, packed = _load(root, check)
        return cls(root, meta, packed)

    def refresh(self) -> None:
        """Re-read the store from disk (the writer does this under its lock)."""
        self.meta, self._packed = _load(self.root, True)

    # reading ------------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Utterance ids, in storage order."""
        return list(self._packed.locs)

    def __len__(self) -> int:
        return len(self._packed.locs)

    def __contains__(self, uid: object) -> bool:
        return uid in self._packed.locs

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed.locs)

    def __getitem__(self, uid: str) -> Tensor:
        """Codes of one utterance, `LongTensor (K, T)`, checksum-verified."""
        return torch.from_numpy(self._packed.get(uid))

    def read(self, uid: str, start: int = 0, stop: int | None = None) -> Tensor:
        """Frames `[start, stop)` of one utterance, `LongTensor (K, stop - start)`."""
        return torch.from_numpy(self._packed.get(uid, start, stop))

    def read_numpy(self, uid: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Like `read`, as an int64 array `(K, stop - start)` (no torch tensor made)."""
        return self._packed.get(uid, start, stop)

    def num_frames(self, uid: str) -> int:
        return self._packed._loc(uid).frames

    def entry(self, uid: str) -> dict[str, Any]:
        """Index record: id, frames, seconds, source, source_bytes, extra (manifest metadata)."""
        if uid not in self._packed.entries:
            raise KeyError(f"no utterance {uid!r} in this store")
        return dict(self._packed.entries[uid])

    def codebook_vectors(self) -> Tensor:
        """The codec's codebook vectors saved with the store, `FloatTensor (K, V, D)`."""
        from safetensors.torch import load

        path = self.root / "codebooks.safetensors"
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != self.meta["codebooks"]["sha256"]:
            raise StoreError(f"{path}: damaged (checksum mismatch)")
        try:  # a forged file (its SHA-256 recomputed) may hold anything: a header that overflows, other tensors
            table = unpack_codebooks(load(blob))
        except Exception as e:  # safetensors raises its own error types, torch RuntimeError, KeyError
            raise StoreError(
                f"{path}: damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        if list(table.shape) != list(self.meta["codebooks"]["shape"]):
            raise StoreError(
                f"{path}: damaged (a table of shape {list(table.shape)}, meta.json says {self.meta['codebooks']['shape']})"
            )
        return table

    # writing ------------------------------------------------------------------------------------

    def writer(self) -> contextlib.AbstractContextManager[ShardWriter]:
        """One writer at a time (an flock on the store). Each `commit()` and the end of the block commit a
        shard atomically; an exception discards the uncommitted utterances and stores nothing partial."""
        return open_writer(self)

    def update_meta(self, meta: dict[str, Any]) -> None:
        """Replace `meta.json` (e.g. marking a store private) under the writer lock, keeping its SHA-256 in
        `contents.json` true: the new hash is first recorded as pending, so a crash at any instant leaves a
        store whose meta matches its record."""
        meta = {**meta, "format_version": max(int(meta.get("format_version", 1)), FORMAT_VERSION)}
        check_meta(self.root / "meta.json", meta)
        with store_lock(self.root):
            self.refresh()
            record_all(self)
            doc = read_contents(self.root)
            assert doc is not None
            new = hashlib.sha256(meta_bytes(meta)).hexdigest()
            write_contents(self.root, {**doc, "meta_sha256_pending": new})
            atomic_write(self.root / "meta.json", meta_bytes(meta))
            write_contents(self.root, {**doc, "meta_sha256": new})
            self.refresh()

    def add_shard(self, path: Path, index: dict[str, Any]) -> None:
        """Make a just-committed shard readable through this handle."""
        self._packed.add(path, index)

    def shard_paths(self) -> list[Path]:
        """The committed shard files, in storage order."""
        return list(self._packed.files.paths)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one bit-packed frame of K codes."""
        return int(self._packed.frame_bytes)

    # labels -------------------------------------------------------------------------------------

    def label_names(self) -> list[str]:
        return [p.stem for p in committed(self.root / "labels", LABEL_SUFFIX)]

    def write_labels(
        self, name: str, labels: Mapping[str, Tensor | np.ndarray], num_classes: int, info: dict[str, Any] | None = None
    ) -> str:
        """Store frame-level labels `(T,)` in [0, num_classes) for some or all utterances, atomically
        (replacing a label set of the same name), under the writer lock, and record it in `contents.json`.
        Each must have exactly the utterance's frame count. Returns the set's fingerprint."""
        check_label_name(name)
        with store_lock(self.root):
            self.refresh()
            record_all(self)
            path = write_label_set(self, name, labels, num_classes, info)
            record_file(self.root, "labels", path, label_record(path))
        return str(fingerprint(read_container_index(path)))

    def labels(self, name: str) -> LabelSet:
        path = self.root / "labels" / f"{name}{LABEL_SUFFIX}"
        if not path.is_file():
            raise StoreError(f"{self.root}: no label set {name!r} (have: {', '.join(self.label_names()) or 'none'})")
        return LabelSet(path, read_container_index(path))

    # summaries ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Size and rate figures (the `info --json` keys the README lists)."""
        entries = self._packed.entries.values()
        seconds = float(sum(e["seconds"] for e in entries))
        frames = int(sum(e["frames"] for e in entries))
        source_bytes = int(sum(e.get("source_bytes", 0) for e in entries))
        total = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))
        codes_bytes = self._packed.payload_bytes  # what the codes take (bit-packed or entropy-coded)
        pcm16 = seconds * self.codec.sample_rate * 2
        return {
            "path": str(self.root),
            "utterances": len(self),
            "frames": frames,
            "seconds": seconds,
            "hours": seconds / 3600.0,
            "bytes": int(total),
            "codes_bytes": int(codes_bytes),
            "kbps": total * 8 / seconds / 1000 if seconds else 0.0,
            "codes_kbps": codes_bytes * 8 / seconds / 1000 if seconds else 0.0,
            "nominal_kbps": self.codec.kbps,
            "source_bytes": source_bytes,
            "ratio_to_source": source_bytes / total if total else 0.0,
            "ratio_to_pcm16": pcm16 / total if total else 0.0,
            "shards": len(self._packed.files.paths),
            "labels": self.label_names(),
            "private": bool(self.meta.get("private")),  # keyed ids, no paths (privacy/private.py)
            "scrambled": bool(self.meta.get("scrambled")),  # codes under a secret permutation (privacy/anonymize.py)
            "codec": {k: v for k, v in self.codec.to_dict().items() if k != "config"} | {"config": self.codec.config},
        }

    def repair(self) -> list[str]:
        """`verify --repair`: drop duplicate copies and foreign files, record the contents (`repair.py`)."""
        return repair_store(self)

    def verify(self) -> list[str]:
        """Recheck meta, codebooks, every shard's footer, index, payload hash and each utterance's CRC-32.
        Returns one line per problem (empty when sound)."""
        return verify_store(self)


def _load(root: Path, check: bool) -> tuple[dict[str, Any], PackedRecords]:
    """Read `meta.json`, check it (and its recorded SHA-256), and index the committed shards."""
    meta_path = root / "meta.json"
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: not a token store (a file, not a folder)")
    if not meta_path.is_file():
        raise StoreError(f"{root}: not a token store (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{meta_path}: damaged ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{meta_path}: not a codec2vec token store")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise StoreError(f"{meta_path}: format version {meta['format_version']} is newer than this codec2vec reads")
    check_meta(meta_path, meta)
    contents = read_contents(root) if check else None
    problem = check_meta_hash(meta_path, meta, contents) if check else None
    if problem:
        raise StoreError(problem)
    if check and contents is not None and is_upgraded(meta):
        for name, rec in contents["shards"].items():
            p = root / "shards" / name
            if not p.is_file():
                raise StoreError(f"{p}: missing (recorded in {CONTENTS} with {rec['utterances']} utterances)")
            if p.stat().st_size != rec["bytes"]:
                raise StoreError(f"{p}: not the shard recorded in {CONTENTS} (size differs)")
    packed = PackedRecords([], [], int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"]))
    for p in committed(root / "shards", SHARD_SUFFIX):
        try:
            idx = read_container_index(p)
            check_shard(p, idx, meta)
            packed.add(p, idx)  # StoreError on an id stored twice (`verify --repair` mends that)
        except StoreError:
            if check:
                raise
    return meta, packed


@contextlib.contextmanager
def building(root: Path) -> Iterator[Path]:
    """A hidden folder beside `root` to build a new store in, renamed to `root` at the end; removed on failure.
    Its `.lock` is held until after the rename, so that `layout.clean_builds` (run at every start, removing
    what a killed build left) never touches a build in progress."""
    import fcntl

    clean_builds(root)  # first: a killed build's folder goes even when `root` is taken
    check_free(root)
    lock = None
    try:
        with atomic_dir(root, replace=root.exists()) as tmp:
            lock = open(tmp / ".lock", "a")
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield tmp
            check_free(root)
    finally:
        if lock is not None:
            lock.close()


STORE_CODINGS = ("auto", "packed", "rans")  # a store's `coding`: how its writer codes new shards (and "huffman" in
# stores made by earlier versions, whose writer now codes as "auto": writer.py)


def new_store_meta(info: CodecInfo, codebook_vectors: Tensor, coding: str) -> tuple[dict[str, Any], bytes]:
    """A new store's `meta.json` and its codebook file's bytes."""
    if coding not in STORE_CODINGS:
        raise StoreError(f"coding {coding!r}: choose one of {', '.join(STORE_CODINGS)}")
    if coding == "rans" and not 2 <= info.codebook_size <= rans.MAX_SYMBOLS:
        raise StoreError(f"coding 'rans' takes codebooks of 2 to {rans.MAX_SYMBOLS} entries, not {info.codebook_size}")
    from safetensors.torch import save

    cb = codebook_vectors.detach().to("cpu", torch.float32).contiguous()
    if tuple(cb.shape[:2]) != (info.num_codebooks, info.codebook_size):
        raise StoreError(
            f"codebook vectors {tuple(cb.shape)} do not match K={info.num_codebooks}, V={info.codebook_size}"
        )
    blob = save(pack_codebooks(cb))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec": info.to_dict(),
        "bits_per_code": packing.bits_for(info.codebook_size),
        "coding": coding,
        "frame_bytes": packing.frame_bytes(info.num_codebooks, packing.bits_for(info.codebook_size)),
        "layout": "frame-major, big-endian bit packing (codec2vec.packing)",
        "codebooks": {
            "file": "codebooks.safetensors",
            "shape": list(cb.shape),
            "sha256": hashlib.sha256(blob).hexdigest(),
        },
    }
    check_meta(Path("meta.json"), meta)  # e.g. a CodecInfo whose hash is not its config's
    return meta, blob


def write_new_store(folder: Path, meta: dict[str, Any], codebooks_blob: bytes) -> None:
    """The files of an empty store (format 2) in `folder`."""
    (folder / "shards").mkdir(exist_ok=True)
    atomic_write(folder / "codebooks.safetensors", codebooks_blob)
    write_contents(folder, empty_contents(meta))
    atomic_write(folder / "meta.json", meta_bytes(meta))


def open_or_create(out: str | os.PathLike[str], codec: Codec, coding: str = "auto") -> TokenStore:
    """The store at `out`, checked to hold codes of this exact codec; created if absent (`tokenize`, private
    stores)."""
    info = codec_info(codec)
    if (Path(out) / "meta.json").exists():
        store = TokenStore.open(out)
        if store.codec.config_hash != info.config_hash or store.codec.name != info.name:
            raise StoreError(
                f"{out}: holds {store.codec.name} codes (config {store.codec.config}), "
                f"not {info.name} ({info.config}); use another --out"
            )
        return store
    return TokenStore.create(out, info, codec.codebook_vectors(), coding=coding)
