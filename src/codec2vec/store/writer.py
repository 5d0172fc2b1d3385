"""Writing to a token store: one writer at a time, each shard committed by one atomic rename.

`open_writer(store)` takes an exclusive lock on the store (an flock on `STORE/.lock`, `store_lock`), removes
what a killed writer left, re-reads the store under the lock (so what another process committed before is
seen: nothing is stored twice), records its contents (`layout.py`, upgrading a format-1 store) and yields
a `ShardWriter`; `ShardWriter.add(id, codes (K, T), ...)` checks the id (`layout.id_problem`) and queues an
utterance, and `commit()` writes the queued ones as a new shard, coded as the store's `coding` says:
"packed" (exact-width bit packing, `packing.py`), "rans" (blocked rANS with order-0 models fitted on that
shard, `rans.py`), or "auto" (rANS when that saves at least 1% all told, else packed); then it records the shard
in `contents.json`. Huffman shards (`entropy.py`, earlier versions' entropy coding) are read but never written:
a crop decodes its whole record, so they read only ~2x faster than FLAC; a store made as "huffman" gets "auto"
shards from now on.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from torch import Tensor

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_write, clean_stale, exclusive_lock
from codec2vec.store import packing, rans
from codec2vec.store.container import read_container_index, write_container
from codec2vec.store.handle import StoreHandle
from codec2vec.store.labels import fingerprint
from codec2vec.store.layout import (
    CONTENTS,
    FORMAT_VERSION,
    LABEL_SUFFIX,
    SHARD_SUFFIX,
    committed,
    empty_contents,
    file_record,
    id_problem,
    is_upgraded,
    meta_bytes,
    read_contents,
    write_contents,
)


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """The store's exclusive writer lock (an flock on `STORE/.lock`); StoreError if another process holds it.
    Removes the temporary files a killed writer left."""
    with exclusive_lock(root / ".lock", busy=StoreError(f"{root}: another process is writing to this store")):
        for folder in (root, root / "shards", root / "labels"):
            clean_stale(folder)  # hidden `.tmp-*.part` files of a killed write
        yield


@contextlib.contextmanager
def open_writer(store: StoreHandle) -> Iterator[ShardWriter]:
    """One writer at a time (an flock on the store). The store handle is re-read under the lock. Each
    `commit()` and the end of the block commit a shard atomically; an exception discards the uncommitted
    utterances and stores nothing partial."""
    with store_lock(store.root):
        store.refresh()  # what another writer committed before we held the lock
        record_all(store)
        w = ShardWriter(store)
        yield w
        w.commit()


def record_all(store: StoreHandle) -> None:
    """Make `contents.json` list every committed shard and label set (upgrading a format-1 store): a no-op
    when it already does. Call under the lock."""
    contents = read_contents(store.root)
    meta = store.meta
    if contents is not None and is_upgraded(meta):
        listed_shards, listed_labels = set(contents["shards"]), set(contents["labels"])
    else:
        contents, listed_shards, listed_labels = None, set(), set()
    on_disk = {p.name: p for p in store.shard_paths()}
    labels = {p.name: p for p in committed(store.root / "labels", LABEL_SUFFIX)}
    if contents is not None and set(on_disk) <= listed_shards and set(labels) <= listed_labels:
        return
    new_meta = {**meta, "format_version": FORMAT_VERSION}
    doc = contents or empty_contents(new_meta)
    for name, path in on_disk.items():
        if name not in listed_shards:
            doc["shards"][name] = file_record(path, len(read_container_index(path)["entries"]["id"]))
    for name, path in labels.items():
        if name not in listed_labels:
            doc["labels"][name] = label_record(path)
    write_contents(store.root, doc)
    if not is_upgraded(meta):  # format 1 -> 2: the record first, then meta.json (see layout.py)
        atomic_write(store.root / "meta.json", meta_bytes(new_meta))
        store.meta = new_meta


def label_record(path: Path) -> dict[str, Any]:

    index = read_container_index(path)
    return file_record(path, len(index["entries"]["id"]), fingerprint=fingerprint(index))


def record_file(root: Path, kind: str, path: Path | None, record: dict[str, Any] | None = None) -> None:
    """Record (or, with `record` None, drop) one committed shard or label set in `contents.json`, under the lock."""
    doc = read_contents(root)
    if doc is None:
        raise StoreError(f"{root}: {CONTENTS} missing; run `codec2vec verify --repair {root}`")
    if record is None:
        doc[kind].pop(path.name if path else "", None)
    else:
        assert path is not None
        doc[kind][path.name] = record
    write_contents(root, doc)


class ShardWriter:
    """Buffers utterances and commits them as one shard file (atomic rename)."""

    def __init__(self, store: StoreHandle) -> None:
        self.store = store
        self._codes: list[np.ndarray] = []  # (K, T) each, coded at commit
        self._cols: dict[str, list[Any]] = {
            k: [] for k in ("id", "frames", "seconds", "source", "source_bytes", "extra")
        }
        self._pending: set[str] = set()
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._codes)

    def add(
        self,
        uid: str,
        codes: Tensor | np.ndarray,
        *,
        seconds: float,
        source: str = "",
        source_bytes: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue one utterance's codes `(K, T)` for the next commit."""
        info = self.store.codec
        arr = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes)
        if arr.ndim != 2 or arr.shape[0] != info.num_codebooks:
            raise StoreError(f"{uid!r}: codes must be (K={info.num_codebooks}, T), got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= info.codebook_size):
            raise StoreError(f"{uid!r}: codes outside [0, {info.codebook_size})")
        problem = id_problem(uid)
        if problem:
            raise StoreError(f"{self.store.root}: {problem}")
        if uid in self.store or uid in self._pending:
            raise StoreError(f"{self.store.root}: utterance {uid!r} is already stored")
        row = (uid, int(arr.shape[1]), float(seconds), str(source), int(source_bytes), extra or {})
        for key, val in zip(self._cols, row):
            self._cols[key].append(val)
        self._codes.append(arr.astype(np.uint16 if info.codebook_size <= 65536 else np.int64))
        self._pending.add(uid)
        self.seconds += float(seconds)

    def _payload(self) -> tuple[list[bytes], dict[str, Any]]:
        """The shard's records and index fields, in the store's coding (module docstring)."""
        coding, v = self.store.coding, self.store.codec.codebook_size
        packed = [packing.pack(c, self.store.bits).tobytes() for c in self._codes]
        auto = coding in ("auto", "huffman")  # "huffman": a store made by an earlier version (module docstring)
        if coding == "packed" or (auto and not 2 <= v <= rans.MAX_SYMBOLS):
            return packed, {"coding": "packed"}
        model = rans.fit_smallest(self._codes, v)
        coded, fields = [rans.encode(c, model) for c in self._codes], {"coding": "rans", "rans": model.to_dict()}
        if auto:  # entropy-code only when it pays, the model and sizes column included
            cost = len(zlib.compress(json.dumps(fields).encode())) + 3 * len(coded)  # the index is zlib-compressed
            if sum(map(len, coded)) + cost >= 0.99 * sum(map(len, packed)):
                return packed, {"coding": "packed"}
        return coded, fields

    def commit(self) -> Path | None:
        """Write the queued utterances as a new shard; returns its path (None if nothing was queued)."""
        if not self._codes:
            return None
        payload, fields = self._payload()
        cols = dict(self._cols, crc32=[zlib.crc32(b) for b in payload])
        if fields["coding"] != "packed":
            cols["nbytes"] = [len(b) for b in payload]
        shards = self.store.root / "shards"
        existing = [int(p.stem) for p in committed(shards, SHARD_SUFFIX) if p.stem.isdigit()]
        path = shards / f"{max(existing, default=-1) + 1:06d}{SHARD_SUFFIX}"
        index = {"kind": "shard", "codec_hash": self.store.codec.config_hash, **fields, "entries": cols}
        path.parent.mkdir(exist_ok=True)
        write_container(path, payload, index)
        self.store.add_shard(path, read_container_index(path))
        record_file(self.store.root, "shards", path, file_record(path, len(payload)))
        self.__init__(self.store)  # type: ignore[misc]  # start the next shard empty
        return path
