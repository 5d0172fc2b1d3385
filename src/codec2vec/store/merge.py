"""`codec2vec merge`: join token stores made with the same codec into one new store.

The usual source is a corpus tokenized in slices (`tokenize --shard I/N` in a job array or under torchrun):
shards are copied byte for byte (never re-encoded), ids must not repeat, and the merged store is built in a
hidden folder beside `out` and renamed into place at the end, so a killed merge leaves nothing half-made.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from codec2vec.errors import StoreError
from codec2vec.files import atomic_write, fsync_dir
from codec2vec.store.layout import SHARD_SUFFIX, check_free, publish
from codec2vec.store.store import TokenStore


def merge_stores(sources: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> int:
    """Join stores made with the same codec (e.g. `tokenize --shard I/N` slices) into a new store `out`.
    Shards are copied, not re-encoded; a repeated id is an error. Label sets are not carried over
    (fit k-means on the merged store). Returns the number of utterances."""
    stores = [TokenStore.open(s) for s in sources]
    first = stores[0]
    for s in stores[1:]:
        if s.codec.config_hash != first.codec.config_hash or s.codec.name != first.codec.name:
            raise StoreError(
                f"{s.root}: made with codec {s.codec.name}/{s.codec.config_hash}, "
                f"{first.root} with {first.codec.name}/{first.codec.config_hash}; cannot merge"
            )
    seen: dict[str, Path] = {}
    for s in stores:
        for uid in s.ids():
            if uid in seen:
                raise StoreError(f"utterance {uid!r} is in both {seen[uid]} and {s.root}")
            seen[uid] = s.root
    out = Path(out)
    check_free(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.merge-"))
    merged = TokenStore.create(building / "store", first.codec, first.codebook_vectors(), coding=first.coding)
    with merged.writer():
        n = 0
        rejects: list[bytes] = []
        for s in stores:
            for src in s.shard_paths():
                dst = merged.root / "shards" / f"{n:06d}{SHARD_SUFFIX}"
                fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")
                os.close(fd)
                shutil.copyfile(src, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, dst)
                n += 1
            if (s.root / "rejects.jsonl").is_file():
                rejects.append((s.root / "rejects.jsonl").read_bytes())
        fsync_dir(merged.root / "shards")
        if rejects:
            atomic_write(merged.root / "rejects.jsonl", rejects)
    (merged.root / ".lock").unlink(missing_ok=True)
    publish(merged.root, out)
    building.rmdir()
    return len(TokenStore.open(out))
