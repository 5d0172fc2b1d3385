"""Private token stores (`codec2vec tokenize ... --private`): a store that can leave the device holding the audio.

What a private store holds, and what it does not (the audit, `audit.py`, lists what any store holds):

- ids are keyed hashes, `HMAC-SHA256(key, original id)` (`keys.keyed_id`); the key (`--private-key`, default
  `STORE.key` beside the store, created 0600 if absent) and the map from hashed ids back to the original ids and
  paths (`--id-map`, default `STORE.ids.jsonl`, 0600) are written OUTSIDE the store and stay with the user;
- no source path, file name or folder name: the index's `source` column is empty, the codec's weight location
  (`path`, `device`) is left out of `meta.json` (its config hash never included it), and inputs that were
  rejected are listed beside the id map (`STORE.ids.rejects.jsonl`), not in the store, since reasons name files;
- manifest columns: only those the user allows (`--private-keep`, default `split` alone), and only scalars:
  free text (transcripts), speaker names and labels stay out unless named. Durations are kept on the codec's
  frame grid (frames / frame rate: what the codes show anyway) and source file sizes are not kept, since an
  exact sample count or byte size can single out a file of a known corpus (`info`'s ratio to the source is 0);
- storage order is the order of the hashed ids, not of the file names (which often group files by speaker);
- no audio, ever (a store never holds audio); `meta.json` says `"private": {...}` and `codec2vec info` says so.

`PrivatePolicy` is the ingest policy (`store/ingest.py`) that `tokenize` is given for all of the above.

What it does not hide: the codes themselves. Anyone with the public codec's decoder turns them back into audio
(log-spectrogram correlation ~0.9 with the source for Lyra at 46 levels); `anonymize` (`anonymize.py`) and the
audit's SID figures are about that.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.codecs.base import LOCATION_KEYS, Codec, codec_info
from codec2vec.corpora.audio import AudioItem
from codec2vec.privacy.keys import PrivacyError, key_check, keyed_id, load_key, write_secret
from codec2vec.store import TokenStore
from codec2vec.store.ingest import Intake, scalar_metadata
from codec2vec.store.store import open_or_create

DEFAULT_KEEP = ("split",)
ID_MAP_KEYS = {"id", "source_id", "path"}  # one row of an id map: keyed id, original id, source path


def default_paths(out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(key file, id map) used when not given: `OUT.key` and `OUT.ids.jsonl`, beside the store, not in it."""
    root = Path(out)
    return root.with_name(root.name + ".key"), root.with_name(root.name + ".ids.jsonl")


def _outside(store: Path, path: Path, flag: str) -> None:
    if path.resolve().is_relative_to(store.resolve()):
        raise PrivacyError(f"{flag} {path}: must be outside the store {store} (it is what stays with you)")


def read_id_map(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Hashed id -> `{"id", "source_id", "path"}` from an id map file (empty if the file does not exist). A file
    that is not an id map (another JSONL such as a manifest, or not JSON at all) is refused, never rewritten."""
    p = Path(path)
    if not p.exists():
        return {}
    if not p.is_file():
        raise PrivacyError(f"--id-map {p}: not a regular file")
    rows = {}
    try:
        lines = p.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PrivacyError(f"--id-map {p}: unreadable ({e}); not a codec2vec id map") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not ID_MAP_KEYS <= set(row) or not isinstance(row["id"], str):
            raise PrivacyError(
                f"--id-map {p}:{n}: not a codec2vec id map (rows are {{id, source_id, path}}); give a new file"
            )
        rows[row["id"]] = row
    return rows


def private_items(
    items: list[AudioItem], *, key: bytes, id_map: str | os.PathLike[str], keep: tuple[str, ...] = DEFAULT_KEEP
) -> list[AudioItem]:
    """The inputs with keyed ids and only the allowed scalar columns, sorted by hashed id; the id map (merged
    with what an earlier run wrote) is written before anything is stored."""
    rows = read_id_map(id_map)
    out = []
    for it in items:
        hid = keyed_id(key, it.id)
        rows[hid] = {"id": hid, "source_id": it.id, "path": it.path}
        extra = {k: it.extra[k] for k in keep if isinstance(it.extra.get(k), (str, int, float, bool))}
        out.append(AudioItem(hid, it.path, extra))
    write_secret(id_map, "".join(json.dumps(r) + "\n" for r in rows.values()).encode())
    return sorted(out, key=lambda it: it.id)


def _mark_private(store: TokenStore, key: bytes, keep: tuple[str, ...]) -> TokenStore:
    meta = dict(store.meta)
    meta["private"] = {"ids": "hmac-sha256", "key_check": key_check(key), "columns_kept": list(keep)}
    meta["codec"] = dict(
        meta["codec"], config={k: v for k, v in meta["codec"]["config"].items() if k not in LOCATION_KEYS}
    )
    store.update_meta(meta)  # keeps meta.json's SHA-256 in contents.json true
    return TokenStore.open(store.root)


def open_private_store(
    out: str | os.PathLike[str], codec: Codec, *, key: bytes, keep: tuple[str, ...], coding: str = "auto"
) -> TokenStore:
    """A private store at `out` (created, or reopened to append to with the same key); a store that already
    holds non-private utterances, or was made with another key, is refused."""

    root = Path(out)
    if (root / "meta.json").exists():
        store = open_or_create(root, codec, coding)  # checks the codec
        private = store.meta.get("private")
        if private and private.get("key_check") != key_check(key):
            raise PrivacyError(f"{root}: a private store made with another key; use its key or another --out")
        if private and list(private.get("columns_kept", [])) != list(keep):
            raise PrivacyError(
                f"{root}: a private store keeping columns {private.get('columns_kept')}, not {list(keep)}; "
                "use the same --private-keep or another --out"
            )
        if not private and len(store):
            raise PrivacyError(f"{root}: holds non-private utterances; use another --out")
        if not private:  # an empty clear store: its rejects name folders and files, so they go
            (root / "rejects.jsonl").unlink(missing_ok=True)
        return store if private else _mark_private(store, key, keep)
    info = codec_info(codec)
    info = replace(info, config={k: v for k, v in info.config.items() if k not in LOCATION_KEYS})
    return _mark_private(TokenStore.create(root, info, codec.codebook_vectors(), coding=coding), key, keep)


@dataclass(frozen=True)
class PrivatePolicy:
    """`tokenize --private`'s ingest policy (`store/ingest.py`): keyed ids, only the `keep` columns, no path or file
    size, durations on the frame grid; the key, the id map and the rejects stay beside the store, not in it."""

    key_file: str | None = None  # default: OUT.key beside the store
    id_map: str | None = None  # default: OUT.ids.jsonl beside the store
    keep: tuple[str, ...] = DEFAULT_KEEP  # manifest columns kept (scalars only)
    private = True

    def open(self, items: list[AudioItem], out: str | os.PathLike[str], codec: Codec, coding: str) -> Intake:
        """The private store at `out` and the inputs under keyed ids; the id map is written before anything is
        stored, and rejects are listed beside it (`STORE.ids.rejects.jsonl`, 0600: reasons name files)."""
        default_key, default_map = default_paths(out)
        key_path = Path(self.key_file) if self.key_file else default_key
        map_path = Path(self.id_map) if self.id_map else default_map
        _outside(Path(out), key_path, "--private-key")
        _outside(Path(out), map_path, "--id-map")
        read_id_map(map_path)  # not our id map: refused before a key or a store is made
        key = load_key(key_path, create=True)
        keep = tuple(self.keep)
        store = open_private_store(out, codec, key=key, keep=keep, coding=coding)
        items = private_items(items, key=key, id_map=map_path, keep=keep)
        return Intake(items, store, map_path.with_name(map_path.stem + ".rejects.jsonl"), secret=True)

    def row(
        self, item: AudioItem, codes: np.ndarray, *, seconds: float, source_bytes: int, frame_rate: float
    ) -> dict[str, Any]:
        """No path, no file size, and the duration on the frame grid (exact sample counts and byte sizes can
        single out a file of a known corpus)."""
        return {
            "seconds": codes.shape[1] / frame_rate,
            "source": "",
            "source_bytes": 0,
            "extra": scalar_metadata(item.extra),
        }
