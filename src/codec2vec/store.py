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
"auto" (the default) and it saves at least 1%, coded with per-level Huffman codes fitted on that shard
(`entropy.py`: Lyra codes carry ~3.8 bits of entropy in 4 bits); the index lists, per utterance,
id, frames, CRC-32 of its bytes, seconds, source path and bytes, and free metadata; the
40-byte footer holds a magic tag, the index's offset, length and CRC-32, and the payload's CRC-32 is
inside the index with its SHA-256. A shard is written to a temporary name, fsynced, and renamed into
place, so it either exists whole or not at all: this rename is the commit. Reads are memory-mapped and
check the utterance's CRC-32 before decoding; `verify()` rechecks everything.

Shapes: `store[id] -> LongTensor (K, T)`; `store.read(id, s, e) -> (K, e - s)`; labels `(T,)`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from codec2vec import entropy, packing
from codec2vec.codebooks import pack_codebooks, unpack_codebooks
from codec2vec.codecs.base import CodecInfo
from codec2vec.entropy import HuffmanModel
from codec2vec.container import (PackedRecords, atomic_write, fsync_dir, read_container_index, record_offsets,
                                 write_container)
from codec2vec.errors import StoreError

FORMAT = "codec2vec-token-store"
FORMAT_VERSION = 1
SHARD_SUFFIX = ".c2s"
LABEL_SUFFIX = ".c2l"
MAX_CODED_FRAMES = 3000  # 60 s at 50 Hz: longer utterances keep their shard bit-packed (crop cost)


def _check_free(root: Path) -> None:
    """`root` may become a new store: absent or empty (dot-files aside)."""
    if (root / "meta.json").exists():
        raise StoreError(f"{root}: a token store already exists here")
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root}: folder is not empty and is not a token store")


def _publish(tmp: Path, root: Path) -> None:
    """Move a store built in `tmp` to `root` in one rename, so a killed create or merge leaves no
    half-made store behind (only a hidden `.NAME.tmp-*` folder, which is never read)."""
    import shutil

    _check_free(root)
    if root.exists():
        shutil.rmtree(root)  # empty but for dot-files
    os.replace(tmp, root)
    fsync_dir(root.parent)


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    """meta.json agrees with itself: the codec hash matches its config, K and V match the codebook table."""
    from codec2vec.codecs.base import config_hash

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


def _check_shard(path: Path, index: dict[str, Any], meta: dict[str, Any]) -> None:
    """A shard belongs to this store's codec (not copied in from another store)."""
    if index.get("codec_hash") != meta["codec"]["config_hash"]:
        raise StoreError(f"{path}: holds codes of codec config {index.get('codec_hash')}, "
                         f"not this store's {meta['codec']['config_hash']}")


def _committed(folder: Path, suffix: str) -> list[Path]:
    """Committed container files in `folder`, sorted. Temporary files of an unfinished (or killed) write
    start with '.' and are never part of the store (pathlib's glob would match them)."""
    return sorted(p for p in folder.glob("*" + suffix) if not p.name.startswith("."))


# --- the store ------------------------------------------------------------------------------------


class TokenStore:
    """A token store on disk. Open with `TokenStore.open(path)`, make with `TokenStore.create(...)`."""

    def __init__(self, root: Path, meta: dict[str, Any], packed: PackedRecords) -> None:
        self.root = root
        self.meta = meta
        self.codec = CodecInfo.from_dict(meta["codec"])
        self.bits = int(meta["bits_per_code"])
        self.coding = str(meta.get("coding", "packed"))  # how new shards are written: "auto" or "packed"
        self._packed = packed

    # construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], info: CodecInfo, codebook_vectors: Tensor, *,
               coding: str = "auto") -> "TokenStore":
        """A new, empty store for codes of `info`'s codec; `codebook_vectors` is `(K, V, D)`. `coding`: "auto"
        entropy-codes a shard when that makes it at least 1% smaller; "packed" keeps exact-width bit packing
        (reads ~10x faster, still far faster than training needs)."""
        if coding not in ("auto", "packed"):
            raise StoreError(f"coding {coding!r}: choose 'auto' or 'packed'")
        from safetensors.torch import save

        root = Path(path)
        _check_free(root)
        cb = codebook_vectors.detach().to("cpu", torch.float32).contiguous()
        if tuple(cb.shape[:2]) != (info.num_codebooks, info.codebook_size):
            raise StoreError(f"codebook vectors {tuple(cb.shape)} do not match K={info.num_codebooks}, V={info.codebook_size}")
        blob = save(pack_codebooks(cb))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "codec": info.to_dict(),
            "bits_per_code": packing.bits_for(info.codebook_size),
            "coding": coding,
            "frame_bytes": packing.frame_bytes(info.num_codebooks, packing.bits_for(info.codebook_size)),
            "layout": "frame-major, big-endian bit packing (codec2vec.packing)",
            "codebooks": {"file": "codebooks.safetensors", "shape": list(cb.shape), "sha256": hashlib.sha256(blob).hexdigest()},
        }
        _check_meta(root / "meta.json", meta)  # e.g. a CodecInfo whose hash is not its config's
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))  # built aside, then renamed
        (tmp / "shards").mkdir()
        atomic_write(tmp / "codebooks.safetensors", blob)
        atomic_write(tmp / "meta.json", json.dumps(meta, indent=2).encode())
        _publish(tmp, root)
        return cls.open(root)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, check: bool = True) -> "TokenStore":
        """Open an existing store. With `check`, a damaged shard index raises `StoreError` naming the file;
        without it (for `verify`), damaged shards are left out and reported by `verify()`."""
        root = Path(path)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{root}: not a token store (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{meta_path}: damaged ({e})") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_path}: not a codec2vec token store")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{meta_path}: format version {meta['format_version']} is newer than this codec2vec reads")
        _check_meta(meta_path, meta)
        paths, indexes = [], []
        for p in _committed(root / "shards", SHARD_SUFFIX):
            try:
                idx = read_container_index(p)
                _check_shard(p, idx, meta)
                indexes.append(idx)
                paths.append(p)
            except StoreError:
                if check:
                    raise
        packed = PackedRecords(paths, indexes, int(meta["codec"]["num_codebooks"]), int(meta["bits_per_code"]))
        return cls(root, meta, packed)

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
        return unpack_codebooks(load(blob))

    # writing ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self) -> Iterator["ShardWriter"]:
        """One writer at a time (an flock on the store). Each `commit()` and the end of the block commit a
        shard atomically; an exception discards the uncommitted utterances and stores nothing partial."""
        lock_path = self.root / ".lock"
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.root}: another process is writing to this store") from None
            for stale in (self.root / "shards").glob(".tmp-*"):  # left by a killed writer
                stale.unlink(missing_ok=True)
            w = ShardWriter(self)
            yield w
            w.commit()

    def _add_container(self, path: Path, index: dict[str, Any]) -> None:
        self._packed.add(path, index)

    # labels -------------------------------------------------------------------------------------

    def label_names(self) -> list[str]:
        return [p.stem for p in _committed(self.root / "labels", LABEL_SUFFIX)]

    def write_labels(self, name: str, labels: Mapping[str, Tensor | np.ndarray], num_classes: int,
                     info: dict[str, Any] | None = None) -> None:
        """Store frame-level labels `(T,)` in [0, num_classes) for some or all utterances, atomically
        (replacing a label set of the same name). Each must have exactly the utterance's frame count."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise StoreError(f"label set name {name!r}: use letters, digits, '-' and '_'")
        bits = packing.bits_for(num_classes)
        payload, cols = [], {"id": [], "frames": [], "crc32": []}
        for uid, lab in labels.items():
            arr = np.asarray(lab.cpu() if isinstance(lab, Tensor) else lab).reshape(-1)
            if uid not in self:
                raise StoreError(f"labels {name!r}: no utterance {uid!r} in {self.root}")
            if arr.shape[0] != self.num_frames(uid):
                raise StoreError(f"labels {name!r}: {uid!r} has {arr.shape[0]} labels for {self.num_frames(uid)} frames")
            if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
                raise StoreError(f"labels {name!r}: {uid!r} has labels outside [0, {num_classes})")
            raw = packing.pack(arr[None, :], bits).tobytes()
            for key, val in (("id", uid), ("frames", int(arr.shape[0])), ("crc32", zlib.crc32(raw))):
                cols[key].append(val)
            payload.append(raw)
        index = {"kind": "labels", "name": name, "num_classes": int(num_classes), "info": info or {}, "entries": cols}
        write_container(self.root / "labels" / f"{name}{LABEL_SUFFIX}", payload, index)

    def labels(self, name: str) -> "LabelSet":
        path = self.root / "labels" / f"{name}{LABEL_SUFFIX}"
        if not path.is_file():
            raise StoreError(f"{self.root}: no label set {name!r} (have: {', '.join(self.label_names()) or 'none'})")
        return LabelSet(path, read_container_index(path))

    # summaries ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Size and rate figures (DESIGN.md `info --json` keys)."""
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
            "codec": {k: v for k, v in self.codec.to_dict().items() if k != "config"} | {"config": self.codec.config},
        }

    def verify(self) -> list[str]:
        """Recheck meta, codebooks, every shard's footer, index, payload hash and each utterance's CRC-32.
        Returns one line per problem (empty when sound)."""
        problems: list[str] = []
        try:
            self.codebook_vectors()
        except (StoreError, OSError, KeyError) as e:
            problems.append(str(e))
        seen: dict[str, Path] = {}
        containers = _committed(self.root / "shards", SHARD_SUFFIX) + _committed(self.root / "labels", LABEL_SUFFIX)
        for path in containers:
            try:
                idx = read_container_index(path)
                if path.suffix == SHARD_SUFFIX:
                    _check_shard(path, idx, self.meta)
            except StoreError as e:
                problems.append(str(e))
                continue
            body = np.memmap(path, dtype=np.uint8, mode="r")[: idx["payload_bytes"]] if idx["payload_bytes"] else b""
            if hashlib.sha256(body).hexdigest() != idx["payload_sha256"]:
                cols = idx["entries"]
                fb = (self._packed.frame_bytes if path.suffix == SHARD_SUFFIX
                      else packing.frame_bytes(1, packing.bits_for(idx["num_classes"])))
                offs = record_offsets(idx, fb)
                bad = [uid for uid, off, end, crc in zip(cols["id"], offs, offs[1:], cols["crc32"])
                       if zlib.crc32(body[off:end]) != crc]
                problems.append(f"{path}: damaged (payload checksum mismatch; utterances affected: "
                                f"{', '.join(bad) if bad else 'none identified'})")
            if path.suffix == SHARD_SUFFIX:
                for uid in idx["entries"]["id"]:
                    if uid in seen:
                        problems.append(f"{path}: utterance {uid!r} is also stored in {seen[uid]}")
                    seen[uid] = path
        return problems


class ShardWriter:
    """Buffers utterances and commits them as one shard file (atomic rename)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self._codes: list[np.ndarray] = []  # (K, T) each, coded at commit
        self._cols: dict[str, list[Any]] = {k: [] for k in
                                            ("id", "frames", "seconds", "source", "source_bytes", "extra")}
        self._pending: set[str] = set()
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._codes)

    def add(self, uid: str, codes: Tensor | np.ndarray, *, seconds: float, source: str = "",
            source_bytes: int = 0, extra: dict[str, Any] | None = None) -> None:
        """Queue one utterance's codes `(K, T)` for the next commit."""
        info = self.store.codec
        arr = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes)
        if arr.ndim != 2 or arr.shape[0] != info.num_codebooks:
            raise StoreError(f"{uid!r}: codes must be (K={info.num_codebooks}, T), got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= info.codebook_size):
            raise StoreError(f"{uid!r}: codes outside [0, {info.codebook_size})")
        if uid in self.store or uid in self._pending:
            raise StoreError(f"{self.store.root}: utterance {uid!r} is already stored")
        row = (uid, int(arr.shape[1]), float(seconds), str(source), int(source_bytes), extra or {})
        for key, val in zip(self._cols, row):
            self._cols[key].append(val)
        self._codes.append(arr.astype(np.uint16 if info.codebook_size <= 65536 else np.int64))
        self._pending.add(uid)
        self.seconds += float(seconds)

    def _payload(self) -> tuple[list[bytes], dict[str, Any]]:
        """The shard's records and index fields: bit-packed, or Huffman-coded (`entropy.py`) with a model
        fitted on this shard when the store's coding is "auto" and that saves at least 1% all told."""
        packed = [packing.pack(c, self.store.bits).tobytes() for c in self._codes]
        # An entropy-coded record is decoded whole for any crop: keep records over a minute bit-packed
        # (a crop of those stays a slice of the memory map).
        if self.store.coding != "auto" or max(c.shape[1] for c in self._codes) > MAX_CODED_FRAMES:
            return packed, {"coding": "packed"}
        model = HuffmanModel.fit(self._codes, self.store.codec.codebook_size)
        coded = [entropy.encode(c, model) for c in self._codes]
        model_cost = sum(len(level) for level in model.to_list()) + 4 * len(coded)  # index growth, roughly
        if sum(map(len, coded)) + model_cost >= 0.99 * sum(map(len, packed)):
            return packed, {"coding": "packed"}
        return coded, {"coding": "huffman", "huffman": model.to_list()}

    def commit(self) -> Path | None:
        """Write the queued utterances as a new shard; returns its path (None if nothing was queued)."""
        if not self._codes:
            return None
        payload, fields = self._payload()
        cols = dict(self._cols, crc32=[zlib.crc32(b) for b in payload])
        if fields["coding"] == "huffman":
            cols["nbytes"] = [len(b) for b in payload]
        shards = self.store.root / "shards"
        existing = [int(p.stem) for p in _committed(shards, SHARD_SUFFIX) if p.stem.isdigit()]
        path = shards / f"{max(existing, default=-1) + 1:06d}{SHARD_SUFFIX}"
        index = {"kind": "shard", "codec_hash": self.store.codec.config_hash, **fields, "entries": cols}
        write_container(path, payload, index)
        self.store._add_container(path, read_container_index(path))
        self.__init__(self.store)  # type: ignore[misc]  # start the next shard empty
        return path


class LabelSet:
    """Frame-level labels of one name: `labels[id] -> LongTensor (T,)`, `.num_classes`, `.info`."""

    def __init__(self, path: Path, index: dict[str, Any]) -> None:
        self.name = str(index["name"])
        self.num_classes = int(index["num_classes"])
        self.info = dict(index.get("info", {}))
        self._packed = PackedRecords([path], [index], 1, packing.bits_for(self.num_classes))

    def ids(self) -> list[str]:
        return list(self._packed.locs)

    def __contains__(self, uid: object) -> bool:
        return uid in self._packed.locs

    def __len__(self) -> int:
        return len(self._packed.locs)

    def __getitem__(self, uid: str) -> Tensor:
        return torch.from_numpy(self._packed.get(uid)[0])

    def read(self, uid: str, start: int = 0, stop: int | None = None) -> Tensor:
        return torch.from_numpy(self._packed.get(uid, start, stop)[0])


def format_info(info: dict[str, Any]) -> str:
    """Human-readable `codec2vec info`."""
    c = info["codec"]
    return "\n".join([
        f"store      {info['path']}",
        f"codec      {c['name']} ({c['sample_rate']} Hz, {c['frame_rate']:g} frames/s, "
        f"K={c['num_codebooks']} x V={c['codebook_size']}, config {c['config_hash']})",
        f"contents   {info['utterances']} utterances, {info['frames']} frames, {info['hours']:.3f} h",
        f"on disk    {info['bytes']:,} bytes in {info['shards']} shards = {info['kbps']:.2f} kbps "
        f"(codes alone {info['codes_kbps']:.2f} kbps; nominal {info['nominal_kbps']:.2f})",
        f"vs source  {info['ratio_to_source']:.1f}x smaller than the source files, "
        f"{info['ratio_to_pcm16']:.1f}x smaller than 16-bit PCM",
        f"labels     {', '.join(info['labels']) or 'none'}",
    ])
