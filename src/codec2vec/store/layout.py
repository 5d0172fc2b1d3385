"""The folder layout of a token store and the checks that keep it one store (see `store.py` for the format).

`committed(folder, suffix)` lists the committed container files (never a writer's hidden temporary file);
`check_meta` checks that `meta.json` agrees with itself; `check_shard` that a shard belongs to the store's
codec; `check_free` / `publish` make a new store appear in one rename.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from codec2vec.errors import StoreError
from codec2vec.files import fsync_dir
from codec2vec.store import packing

FORMAT = "codec2vec-token-store"
FORMAT_VERSION = 1
SHARD_SUFFIX = ".c2s"
LABEL_SUFFIX = ".c2l"


def check_free(root: Path) -> None:
    """`root` may become a new store: absent or empty (dot-files aside)."""
    if (root / "meta.json").exists():
        raise StoreError(f"{root}: a token store already exists here")
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root}: folder is not empty and is not a token store")


def publish(tmp: Path, root: Path) -> None:
    """Move a store built in `tmp` to `root` in one rename, so a killed create or merge leaves no
    half-made store behind (only a hidden `.NAME.tmp-*` folder, which is never read)."""
    check_free(root)
    if root.exists():
        shutil.rmtree(root)  # empty but for dot-files
    os.replace(tmp, root)
    fsync_dir(root.parent)


def check_meta(path: Path, meta: dict[str, Any]) -> None:
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


def check_shard(path: Path, index: dict[str, Any], meta: dict[str, Any]) -> None:
    """A shard belongs to this store's codec (not copied in from another store)."""
    if index.get("codec_hash") != meta["codec"]["config_hash"]:
        raise StoreError(
            f"{path}: holds codes of codec config {index.get('codec_hash')}, "
            f"not this store's {meta['codec']['config_hash']}"
        )


def committed(folder: Path, suffix: str) -> list[Path]:
    """Committed container files in `folder`, sorted. Temporary files of an unfinished (or killed) write
    start with '.' and are never part of the store (pathlib's glob would match them)."""
    return sorted(p for p in folder.glob("*" + suffix) if not p.name.startswith("."))
