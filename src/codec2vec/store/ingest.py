"""Ingest policies: what `tokenize` takes into a store, which index fields it keeps, and where rejects go.

`tokenize` is given a policy and has no mode of its own. `IngestPolicy.open(items, out, codec, coding)` opens
(or creates) the store and returns an `Intake`: the inputs to take, with the ids and columns they are stored
under, the open store, and where rejected inputs are listed; `IngestPolicy.row(...)` gives the index fields of
one stored utterance (`ShardWriter.add`'s keywords). `ClearPolicy` (the default) keeps every scalar manifest
column, the source path and size, and lists rejects in `STORE/rejects.jsonl`; the private policy
(`privacy/private.py`) keys the ids, keeps only the allowed columns and no path or size, and lists rejects
beside its id map, outside the store.

Shapes: a stored utterance's codes are `(K, T)`; `row` reads T (frames) from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codec2vec.codecs.base import Codec
from codec2vec.corpora.audio import AudioItem
from codec2vec.store.store import TokenStore, open_or_create


@dataclass(frozen=True)
class Intake:
    """What a policy hands `tokenize`: the inputs to take (ids and columns as stored), the open store, and the
    file that lists rejected inputs (`secret`: written 0600 from the first byte, e.g. when it pairs keyed ids
    with source paths)."""

    items: list[AudioItem]
    store: TokenStore
    rejects: Path
    secret: bool = False


class IngestPolicy(Protocol):
    """How `tokenize` fills a store (the module docstring)."""

    private: bool  # the store holds keyed ids and no paths: `--private`

    def open(self, items: list[AudioItem], out: str | os.PathLike[str], codec: Codec, coding: str) -> Intake:
        """Open or create the store at `out` for `codec` and choose what of `items` is taken, under which ids."""
        ...

    def row(
        self, item: AudioItem, codes: np.ndarray, *, seconds: float, source_bytes: int, frame_rate: float
    ) -> dict[str, Any]:
        """The index fields (`seconds`, `source`, `source_bytes`, `extra`) of `item`, encoded as `codes (K, T)`
        from `seconds` of audio in a file of `source_bytes` bytes."""
        ...


def scalar_metadata(extra: dict[str, Any]) -> dict[str, Any]:
    """The manifest columns kept in the store's index: scalars only (speaker, split, text, ...). Lists such as
    frame alignments or phone sequences would outweigh the codes themselves; they belong in label sets
    (`TokenStore.write_labels`) or stay in the manifest."""
    return {
        k: v
        for k, v in extra.items()
        if k not in ("id", "path", "seconds") and (v is None or isinstance(v, (str, int, float, bool)))
    }


class ClearPolicy:
    """The default: every input under its own id, its scalar columns, source path and size; rejects in the store."""

    private = False

    def open(self, items: list[AudioItem], out: str | os.PathLike[str], codec: Codec, coding: str) -> Intake:
        store = open_or_create(out, codec, coding)
        return Intake(items, store, store.root / "rejects.jsonl")

    def row(
        self, item: AudioItem, codes: np.ndarray, *, seconds: float, source_bytes: int, frame_rate: float
    ) -> dict[str, Any]:
        return {
            "seconds": seconds,
            "source": item.path,
            "source_bytes": source_bytes,
            "extra": scalar_metadata(item.extra),
        }
