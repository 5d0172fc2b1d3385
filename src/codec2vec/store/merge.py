"""`codec2vec merge`: join token stores made with the same codec into one new store.

The usual source is a corpus tokenized in slices (`tokenize --shard I/N` in a job array or under torchrun):
shards are copied byte for byte (never re-encoded), ids must not repeat, and the merged store is built in a
hidden folder beside `out` and renamed into place at the end, so a killed merge leaves nothing half-made
(the hidden folder is removed on failure, and a killed merge's is removed by the next start).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_file, atomic_write, check_outside
from codec2vec.store.container import read_container_index
from codec2vec.store.layout import SHARD_SUFFIX, file_record, read_contents, write_contents
from codec2vec.store.store import TokenStore, building, new_store_meta, write_new_store


def _privacy(store: TokenStore) -> tuple[str | None, str | None]:
    """(private id key's fingerprint, scrambling key's fingerprint); None where the store is not so."""
    private, scrambled = store.meta.get("private"), store.meta.get("scrambled")
    return (
        str(private.get("key_check")) if isinstance(private, dict) else ("yes" if private else None),
        str(scrambled.get("key_check")) if isinstance(scrambled, dict) else ("yes" if scrambled else None),
    )


def _carried(stores: list[TokenStore]) -> dict[str, Any]:
    """The privacy fields of the merged store's meta (the inputs agree on them): `scrambled` as it is, `private`
    with the union of the manifest columns the inputs kept."""
    first, out = stores[0].meta, {}
    if first.get("scrambled"):
        out["scrambled"] = first["scrambled"]
    if isinstance(first.get("private"), dict):
        kept = {c for s in stores for c in (s.meta["private"].get("columns_kept") or [])}
        out["private"] = {**first["private"], "columns_kept": sorted(kept)}
    elif first.get("private"):
        out["private"] = first["private"]
    return out


def _describe(privacy: tuple[str | None, str | None]) -> str:
    private, scrambled = privacy
    return (
        f"{'private (key ' + private + ')' if private else 'not private'}, "
        f"{'scrambled (key ' + scrambled + ')' if scrambled else 'not scrambled'}"
    )


def merge_stores(sources: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> int:
    """Join stores made with the same codec (e.g. `tokenize --shard I/N` slices) into a new store `out`.
    Shards are copied, not re-encoded; a repeated id is an error. Stores whose privacy differs (private ids
    under another key, or codes scrambled under another key, or one scrambled and one clear) are refused; when
    they agree, `private`, `scrambled` (and the keys' fingerprints) are carried into `out`. Label sets are not
    carried over (fit k-means on the merged store). Returns the number of utterances."""
    check_outside({"--out": out}, list(sources))  # a source store is never written
    stores = [TokenStore.open(s) for s in sources]
    first = stores[0]
    for s in stores[1:]:
        if s.codec.config_hash != first.codec.config_hash or s.codec.name != first.codec.name:
            raise StoreError(
                f"{s.root}: made with codec {s.codec.name}/{s.codec.config_hash}, "
                f"{first.root} with {first.codec.name}/{first.codec.config_hash}; cannot merge"
            )
    privacy = _privacy(first)
    for s in stores[1:]:
        if _privacy(s) != privacy:
            raise StoreError(
                f"{s.root}: {_describe(_privacy(s))}, {first.root}: {_describe(privacy)}; cannot merge stores "
                "whose privacy or scrambling key differ"
            )
    seen: dict[str, Path] = {}
    for s in stores:
        for uid in s.ids():
            if uid in seen:
                raise StoreError(f"utterance {uid!r} is in both {seen[uid]} and {s.root}")
            seen[uid] = s.root
    out = Path(out)
    with building(out) as tmp:  # removed if anything fails; a killed merge's folder goes at the next start
        meta, blob = new_store_meta(first.codec, first.codebook_vectors(), first.coding)
        write_new_store(tmp, {**meta, **_carried(stores)}, blob)
        n, rejects = 0, []
        doc = read_contents(tmp)
        assert doc is not None
        for s in stores:
            for src in s.shard_paths():
                dst = tmp / "shards" / f"{n:06d}{SHARD_SUFFIX}"
                with atomic_file(dst) as f, open(src, "rb") as g:
                    shutil.copyfileobj(g, f)
                doc["shards"][dst.name] = file_record(dst, len(read_container_index(dst)["entries"]["id"]))
                n += 1
            if (s.root / "rejects.jsonl").is_file():
                rejects.append((s.root / "rejects.jsonl").read_bytes())
        write_contents(tmp, doc)
        if rejects:
            atomic_write(tmp / "rejects.jsonl", rejects)
        if TokenStore.open(tmp).verify():
            raise StoreError(f"{out}: the merged store does not verify; nothing was written")
    return len(TokenStore.open(out))
