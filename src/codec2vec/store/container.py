"""Container files: the on-disk unit of a token store (shards) and of its label sets.

A container is `[payload][zlib-compressed JSON index][40-byte footer]`. The footer holds a magic tag and
the index's offset, length and CRC-32; the index lists records (id, frames, CRC-32 of the record's
bytes, plus free columns; records lie back to back, so offsets follow from the frame counts) and the payload's CRC-32 and SHA-256. Containers are written whole to a
temporary name, fsynced and renamed (`atomic_write`), so a crash never leaves half a container in place.

`PackedRecords` gives memory-mapped, checksum-verified access to the records of many containers:
`get(id, start, stop) -> int64 (K, stop-start)`. A container's records are frame-major bit-packed codes
(`packing.py`; `coding` absent or "packed": a crop is a byte slice), blocked rANS (`rans.py`; `coding: "rans"`
with the model under `rans` and a per-record `nbytes` column: a crop decodes only the blocks it overlaps), or
per-level Huffman (`entropy.py`; `coding: "huffman"`, written by earlier versions: decoded whole, then cropped).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_write
from codec2vec.store import entropy, packing, rans
from codec2vec.store.entropy import HuffmanModel
from codec2vec.store.rans import RansModel

CODINGS = ("packed", "rans", "huffman")  # how a shard's records are coded (the index's `coding`)

MAGIC = b"C2VTOK01"
FOOTER = struct.Struct("<8sQQI12x")  # magic, index offset, index length, index crc32, padding: 40 bytes


def write_container(path: Path, payload: list[bytes], index: dict[str, Any]) -> None:
    body = b"".join(payload)
    index = dict(
        index, payload_bytes=len(body), payload_crc32=zlib.crc32(body), payload_sha256=hashlib.sha256(body).hexdigest()
    )
    blob = zlib.compress(json.dumps(index, separators=(",", ":")).encode(), 9)
    footer = FOOTER.pack(MAGIC, len(body), len(blob), zlib.crc32(blob))
    atomic_write(path, [body, blob, footer])


def read_container_index(path: Path) -> dict[str, Any]:
    """The index of a shard or label file; raises StoreError naming the file if it is damaged."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < FOOTER.size:
                raise StoreError(f"{path}: damaged (too short to be a codec2vec container)")
            f.seek(size - FOOTER.size)
            magic, off, length, crc = FOOTER.unpack(f.read(FOOTER.size))
            if magic != MAGIC or off + length + FOOTER.size != size:
                raise StoreError(f"{path}: damaged (bad footer)")
            f.seek(off)
            blob = f.read(length)
    except OSError as e:
        raise StoreError(f"{path}: unreadable ({e.strerror or e})") from None
    if zlib.crc32(blob) != crc:
        raise StoreError(f"{path}: damaged (index checksum mismatch)")
    try:
        index = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        raise StoreError(f"{path}: damaged (index unreadable)") from None
    if not isinstance(index, dict):
        raise StoreError(f"{path}: damaged (the index is a JSON {type(index).__name__}, not an object)")
    if index.get("payload_bytes") != off:
        raise StoreError(
            f"{path}: damaged (index field 'payload_bytes' says {index.get('payload_bytes')!r}, the footer {off})"
        )
    return index


# --- per-utterance records ------------------------------------------------------------------------


def record_offsets(index: dict[str, Any], frame_bytes: int) -> list[int]:
    """Byte offsets of a container's back-to-back records (one more entry: the payload's end): from the
    `nbytes` column when the records have variable sizes, else from the frame counts."""
    cols = index["entries"]
    sizes = np.asarray(cols["nbytes"] if "nbytes" in cols else cols["frames"], dtype=np.int64)
    return [0, *np.cumsum(sizes if "nbytes" in cols else sizes * frame_bytes).tolist()]


def _int(value: Any, low: int, high: int) -> bool:
    """`value` is a JSON integer (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_records(path: Path, index: dict[str, Any], frame_bytes: int, model: HuffmanModel | RansModel | None) -> None:
    """Bound every field of a container's record table before any arithmetic on it: equal-length columns (`id`,
    `frames`, `crc32`, and `nbytes` for entropy-coded records), string ids, CRC-32s in 32 bits, frame counts that
    the record's bytes can hold (packed: `frames * frame_bytes`; rANS: a header byte and two 32-bit states per
    block; Huffman: at least a bit per code), records that tile the payload exactly. StoreError naming the
    container, the utterance (or row) and the field."""
    cols = index.get("entries")
    if not isinstance(cols, dict):
        raise StoreError(f"{path}: damaged index (field 'entries' is {type(cols).__name__}, not a table)")
    need = ("id", "frames", "crc32") + (("nbytes",) if model is not None else ())
    for key in need:
        if not isinstance(cols.get(key), list):
            raise StoreError(f"{path}: damaged index (column {key!r} missing or not a list)")
    n = len(cols["id"])
    for key, col in cols.items():
        if not isinstance(col, list) or len(col) != n:
            size = len(col) if isinstance(col, list) else type(col).__name__
            raise StoreError(f"{path}: damaged index (column {key!r} has {size} rows, column 'id' has {n})")
    payload = index.get("payload_bytes")
    if not isinstance(payload, int) or not _int(payload, 0, 1 << 62):
        raise StoreError(f"{path}: damaged index (field 'payload_bytes' is {payload!r})")
    if not _records_fit(cols, payload, frame_bytes, model):
        _name_bad_record(path, cols, payload, frame_bytes, model)


def _records_fit(cols: dict[str, list[Any]], payload: int, frame_bytes: int, model: Any) -> bool:
    """The common case of `check_records` at array speed (100k records: ~20 ms); False when any record may be
    out of bounds (`_name_bad_record` then finds it)."""
    ids, frames, crc = cols["id"], cols["frames"], cols["crc32"]
    sizes = frames if model is None else cols["nbytes"]
    if not ids:
        return payload == 0
    if not (all(type(u) is str for u in ids) and all(type(x) is int for c in (frames, crc, sizes) for x in c)):
        return False
    if min(frames) < 0 or max(frames) >= 1 << 40 or min(crc) < 0 or max(crc) > 0xFFFFFFFF or min(sizes) < 0:
        return False
    if sum(sizes) * (frame_bytes if model is None else 1) != payload:
        return False
    if model is None:
        return True
    f, b = np.asarray(frames, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    ok = (b == 0) == (f == 0)
    if isinstance(model, RansModel):
        ok &= (b >= 9 * -(-f // model.block_frames)) & (f * model.min_bits_per_frame <= 8 * b + 64)
    else:
        ok &= f * model.num_codebooks <= 8 * b
    return bool(ok.all())


def _name_bad_record(path: Path, cols: dict[str, list[Any]], payload: int, frame_bytes: int, model: Any) -> None:
    """The first record of `check_records` out of bounds, as a StoreError naming it and the field."""
    total = 0
    for j, uid in enumerate(cols["id"]):
        if not isinstance(uid, str):
            raise StoreError(f"{path}: damaged index (row {j}: field 'id' is {uid!r}, not a string)")
        frames, crc = cols["frames"][j], cols["crc32"][j]
        where = f"{path}: damaged index (utterance {uid!r}"
        if not _int(frames, 0, 1 << 62):
            raise StoreError(f"{where}: field 'frames' is {frames!r})")
        if not _int(crc, 0, 0xFFFFFFFF):
            raise StoreError(f"{where}: field 'crc32' is {crc!r})")
        size = frames * frame_bytes if model is None else cols["nbytes"][j]
        if not _int(size, 0, payload - total):
            field = "frames" if model is None else "nbytes"
            raise StoreError(
                f"{where}: field {field!r} makes a record of {size!r} bytes, past the {payload}-byte payload)"
            )
        if model is not None and (size == 0) != (frames == 0):
            raise StoreError(f"{where}: fields 'frames' {frames} and 'nbytes' {size} disagree)")
        if isinstance(model, RansModel) and (
            size < 9 * -(-frames // model.block_frames) or frames * model.min_bits_per_frame > 8 * size + 64
        ):
            raise StoreError(f"{where}: field 'frames' {frames} needs more than its {size} bytes under its model)")
        if isinstance(model, HuffmanModel) and frames * model.num_codebooks > 8 * size:
            raise StoreError(f"{where}: field 'frames' {frames} needs more than its {size} bytes)")
        total += size
    if total != payload:
        raise StoreError(f"{path}: damaged index (its records hold {total} bytes, the payload {payload})")


def decode_record(
    raw: np.ndarray, model: HuffmanModel | RansModel | None, k: int, bits: int, frames: int, start: int, stop: int
) -> np.ndarray:
    """Frames `[start, stop)` of one record's bytes `(nbytes,)` uint8 -> int64 codes `(K, stop - start)`;
    ValueError on corrupt data (the caller has checked its CRC-32)."""
    if isinstance(model, RansModel):  # the blocks the crop overlaps
        return rans.decode(raw, model, k, frames, start, stop)
    if model is not None:  # Huffman: decode the record, then crop
        return entropy.decode(raw, model, k, frames)[:, start:stop]
    fb = packing.frame_bytes(k, bits)
    return packing.unpack(raw[start * fb : stop * fb], k, bits)  # (K, stop - start)


class FrameTypeError(StoreError, TypeError):
    """`start` or `stop` of a read is not an integer."""


class FrameRangeError(StoreError, IndexError):
    """`[start, stop)` of a read is not inside the utterance."""


def shard_model(path: Path, index: dict[str, Any], num_codebooks: int, bits: int) -> HuffmanModel | RansModel | None:
    """The entropy model of a shard's index (None when bit-packed), checked against the store's K and code width
    (a rANS model of another format version is refused); StoreError naming the shard otherwise."""
    coding = index.get("coding", "packed")
    if coding not in CODINGS:
        raise StoreError(f"{path}: unknown coding {coding!r} (written by a newer codec2vec?)")
    if coding == "packed":
        return None
    try:
        model = HuffmanModel.from_list(index["huffman"]) if coding == "huffman" else RansModel.from_dict(index["rans"])
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: damaged or unreadable {coding} model ({type(e).__name__}: {e})") from None
    if model.num_codebooks != num_codebooks or model.codebook_size > 1 << bits:
        raise StoreError(
            f"{path}: its entropy model is for K={model.num_codebooks} x V={model.codebook_size}, "
            f"this store has K={num_codebooks} and {bits}-bit codes"
        )
    return model


@dataclass(frozen=True)
class _Loc:
    file: int  # index into the store's list of container files
    offset: int  # byte offset in the payload
    nbytes: int
    frames: int
    crc: int


class _Containers:
    """Memory maps of container files, opened on first use."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._maps: dict[int, np.ndarray] = {}

    def bytes(self, loc: _Loc) -> np.ndarray:
        """The record's bytes `(nbytes,)` uint8, a view of the memory map (a plain read-only array over an
        `mmap`: slicing an `np.memmap` runs Python hooks, a fifth of a short crop's read time)."""
        m = self._maps.get(loc.file)
        if m is None:
            with open(self.paths[loc.file], "rb") as f:
                m = self._maps[loc.file] = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
        return m[loc.offset : loc.offset + loc.nbytes]

    def __getstate__(self) -> dict[str, Any]:  # memory maps are re-opened in each worker process
        return {"paths": self.paths, "_maps": {}}


class PackedRecords:
    """Utterances packed in container files: location index, checksum-verified random access."""

    def __init__(self, paths: list[Path], indexes: list[dict[str, Any]], num_codebooks: int, bits: int) -> None:
        self.k, self.bits = num_codebooks, bits
        self.frame_bytes = packing.frame_bytes(num_codebooks, bits)
        self.files = _Containers([])
        self.locs: dict[str, _Loc] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.models: list[HuffmanModel | RansModel | None] = []  # per container: its model, None when bit-packed
        self.payload_bytes = 0
        self._verified: set[str] = set()
        for path, idx in zip(paths, indexes):
            self.add(path, idx)

    def add(self, path: Path, index: dict[str, Any]) -> None:
        """Register one container file's utterances."""
        self.files.paths.append(path)
        fi = len(self.files.paths) - 1
        model = shard_model(path, index, self.k, self.bits)
        check_records(path, index, self.frame_bytes, model)
        self.models.append(model)
        self.payload_bytes += int(index.get("payload_bytes", 0))
        cols = index["entries"]
        offsets = record_offsets(index, self.frame_bytes)
        for j, uid in enumerate(cols["id"]):
            if uid in self.locs:
                other = self.files.paths[self.locs[uid].file]
                raise StoreError(
                    f"{path}: utterance {uid!r} is also stored in {other} (`codec2vec verify --repair` keeps one copy)"
                )
            self.locs[uid] = _Loc(fi, offsets[j], offsets[j + 1] - offsets[j], cols["frames"][j], cols["crc32"][j])
            self.entries[uid] = {key: cols[key][j] for key in cols if key not in ("crc32", "nbytes")}

    def checked_bytes(self, uid: str) -> np.ndarray:
        loc = self._loc(uid)
        raw = self.files.bytes(loc)
        if uid not in self._verified:
            if zlib.crc32(raw.data) != loc.crc:
                raise StoreError(
                    f"{self.files.paths[loc.file]}: utterance {uid!r} fails its checksum (the file is damaged; "
                    "run `codec2vec verify`)"
                )
            self._verified.add(uid)
        return raw

    def _loc(self, uid: str) -> _Loc:
        try:
            return self.locs[uid]
        except (KeyError, TypeError):
            raise KeyError(f"no utterance {uid!r} in this store") from None

    def get(self, uid: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames `[start, stop)` of `uid` -> int64 `(K, stop - start)`; FrameTypeError / FrameRangeError (also
        a TypeError / IndexError) for bad frames, StoreError for a damaged record."""
        loc = self._loc(uid)
        stop = loc.frames if stop is None else stop
        for name, value in (("start", start), ("stop", stop)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
                raise FrameTypeError(f"utterance {uid!r}: frame {name} must be an integer, got {value!r}")
        if not 0 <= start <= stop <= loc.frames:
            raise FrameRangeError(f"frames [{start}, {stop}) outside utterance {uid!r} of {loc.frames} frames")
        try:
            return decode_record(
                self.checked_bytes(uid), self.models[loc.file], self.k, self.bits, loc.frames, int(start), int(stop)
            )
        except (ValueError, MemoryError) as e:
            why = e if isinstance(e, ValueError) else f"{loc.frames} frames do not fit in memory"
            raise StoreError(f"{self.files.paths[loc.file]}: utterance {uid!r} cannot be decoded ({why})") from None
