"""Frame-level label sets of a token store (k-means labels, probe labels), on the codec's frame grid.

A label set is one container file `labels/<name>.c2l` (`container.py`): per utterance, `(T,)` labels in
`[0, num_classes)` bit-packed at `ceil(log2(num_classes))` bits, with the set's `num_classes` and free `info`
(e.g. how the labels were made) in its index. `write_label_set` replaces a set atomically (the store calls
it under its writer lock and records the file in `contents.json`). A set's `fingerprint` is the SHA-256 of
its ids, frame counts, class count and payload hash: a run records it and refuses labels that changed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import StoreError
from codec2vec.store import packing
from codec2vec.store.container import PackedRecords, write_container
from codec2vec.store.handle import StoreHandle
from codec2vec.store.layout import LABEL_SUFFIX


class LabelSet:
    """Frame-level labels of one name: `labels[id] -> LongTensor (T,)`, `.num_classes`, `.info`."""

    def __init__(self, path: Path, index: dict[str, Any]) -> None:
        self.name = str(index["name"])
        self.num_classes = int(index["num_classes"])
        self.info = dict(index.get("info", {}))
        self.fingerprint = fingerprint(index)
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


def check_label_name(name: str) -> None:
    """Label set names are file names: letters, digits, '-' and '_'."""
    if not name or not name.replace("_", "").replace("-", "").isalnum() or not name.isascii():
        raise StoreError(f"label set name {name!r}: use letters, digits, '-' and '_'")


def fingerprint(index: dict[str, Any]) -> str:
    """SHA-256 of what a label set says: its ids, frame counts, class count and payload (by its SHA-256)."""
    if "fingerprint" in index:
        return str(index["fingerprint"])
    cols = index["entries"]
    body = [int(index["num_classes"]), list(cols["id"]), list(cols["frames"]), index.get("payload_sha256", "")]
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode("utf-8", "surrogatepass")).hexdigest()


def write_label_set(
    store: StoreHandle,
    name: str,
    labels: Mapping[str, Tensor | np.ndarray],
    num_classes: int,
    info: dict[str, Any] | None = None,
) -> Path:
    """Store frame-level labels `(T,)` in [0, num_classes) for some or all utterances, atomically
    (replacing a label set of the same name). Each must have exactly the utterance's frame count."""
    check_label_name(name)
    bits = packing.bits_for(num_classes)
    payload: list[bytes] = []
    cols: dict[str, list[Any]] = {"id": [], "frames": [], "crc32": []}
    for uid, lab in labels.items():
        arr = np.asarray(lab.cpu() if isinstance(lab, Tensor) else lab).reshape(-1)
        if uid not in store:
            raise StoreError(f"labels {name!r}: no utterance {uid!r} in {store.root}")
        if arr.shape[0] != store.num_frames(uid):
            raise StoreError(f"labels {name!r}: {uid!r} has {arr.shape[0]} labels for {store.num_frames(uid)} frames")
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise StoreError(f"labels {name!r}: {uid!r} has labels outside [0, {num_classes})")
        raw = packing.pack(arr[None, :], bits).tobytes()
        for key, val in (("id", uid), ("frames", int(arr.shape[0])), ("crc32", zlib.crc32(raw))):
            cols[key].append(val)
        payload.append(raw)
    index = {"kind": "labels", "name": name, "num_classes": int(num_classes), "info": info or {}, "entries": cols}
    body = b"".join(payload)
    index["fingerprint"] = fingerprint({**index, "payload_sha256": hashlib.sha256(body).hexdigest()})
    path = store.root / "labels" / f"{name}{LABEL_SUFFIX}"
    write_container(path, payload, index)
    return path
