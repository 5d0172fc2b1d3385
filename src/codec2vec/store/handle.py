"""What the store's own parts (the writer, label sets, verify, repair) need of an open store.

`TokenStore` (`store.py`) is the one implementation; it imports those parts to offer `writer()`, `write_labels`,
`verify()` and `repair()`, so they are typed against this Protocol instead of importing the class back (no
import circle). Code outside `store/` takes a `TokenStore`.

Shapes: `store[id]`-style reads are not part of it; `num_frames(id)` is the utterance's frame count T.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from codec2vec.codecs.base import CodecInfo


class StoreHandle(Protocol):
    """An open token store as its writer, label writer, `verify` and `repair` see it."""

    root: Path  # the store's folder
    meta: dict[str, Any]  # `meta.json` as read (replaced by the writer when it upgrades the format)
    codec: CodecInfo  # the codec whose codes it holds
    bits: int  # bits of one packed code

    @property
    def coding(self) -> str:
        """How new shards are written ("auto", "packed", "rans")."""
        ...

    def __contains__(self, uid: object) -> bool: ...

    def num_frames(self, uid: str) -> int:
        """Frames T of a stored utterance."""
        ...

    def codebook_vectors(self) -> Tensor:
        """The saved codebook table `(K, V, D)`, checked against `meta.json`."""
        ...

    def refresh(self) -> None:
        """Re-read the store from disk."""
        ...

    def shard_paths(self) -> list[Path]:
        """The committed shard files, in storage order."""
        ...

    def add_shard(self, path: Path, index: dict[str, Any]) -> None:
        """Make a just-committed shard readable through this handle."""
        ...
