"""`codec2vec decode`: a store's codes back to audio with the codec that made them (rebuilt from `meta.json`).

`decode_store(store, out)` writes `out/<id>.<fmt>` at the codec's sample rate; every output path is proven to lie
inside `out` before anything is written (`output_path`), whatever ids an older store may hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codec2vec.codecs import Codec, codec_info, get_codec
from codec2vec.common.errors import Codec2VecError, StoreError
from codec2vec.common.files import check_outside
from codec2vec.common.options import option
from codec2vec.store.layout import id_problem
from codec2vec.store.store import TokenStore


def codec_for_store(store: TokenStore, codec_path: str | None = None) -> Codec:
    """Rebuild the codec that made a store's codes (for decoding), from its metadata."""
    cfg = store.codec.config
    kw: dict[str, Any] = {"num_codebooks": store.codec.num_codebooks}
    path = codec_path if codec_path is not None else cfg.get("path")
    if path is not None:
        kw["path"] = path
    codec = get_codec(store.codec.name, **kw)
    if codec_info(codec).config_hash != store.codec.config_hash and codec_path is None:
        raise StoreError(
            f"{store.root}: the codec built from its metadata ({codec.config()}) is not the one that made "
            f"the store ({store.codec.config}); pass --codec-path"
        )
    return codec


@dataclass(frozen=True)
class DecodeOptions:
    """What `codec2vec decode` writes (its flags, made from these fields by `cli/flags.py`)."""

    ids: list[str] | None = option(None, nargs="*", help="utterance ids (default: all)")
    codec_path: str | None = option(None)
    format: str = option("wav", choices=("wav", "flac"))


def decode_store(
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    ids: list[str] | None = None,
    codec_path: str | None = None,
    fmt: str = "wav",
) -> int:
    """Decode utterances of a store to audio files `out/<id>.<fmt>` at the codec's sample rate."""
    import soundfile as sf

    check_outside({"--out": out}, [store_path])  # the store is never written
    store = TokenStore.open(store_path)
    wanted = store.ids() if not ids else ids
    missing = [u for u in wanted if u not in store]
    if missing:
        raise StoreError(f"{store_path}: no utterance(s) {', '.join(missing[:5])}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise Codec2VecError(f"--out {root}: exists and is not a folder")
    targets = {uid: output_path(root, uid, fmt) for uid in wanted}  # all checked before anything is written
    codec = codec_for_store(store, codec_path)
    for uid in wanted:
        codes = store[uid][None]  # (1, K, T)
        with torch.inference_mode():
            wav, n = codec.decode(codes, torch.tensor([codes.shape[-1]]))
        target = targets[uid]
        target.parent.mkdir(parents=True, exist_ok=True)
        # the format named, not guessed from the name: an id such as '...' has no extension to guess from
        sf.write(os.fsencode(target), wav[0, : int(n[0])].cpu().numpy(), codec.sample_rate, format=fmt.upper())
    return len(wanted)


def output_path(root: Path, uid: str, suffix: str) -> Path:
    """`root/<uid>.<suffix>`, proven to stay inside `root` (links resolved); StoreError naming the id if not
    (a store written by an older codec2vec may hold an id such as '../x')."""

    problem = id_problem(uid)
    target = root / f"{uid}.{suffix}"
    base = root.resolve()
    if problem or not target.resolve().is_relative_to(base) or target.resolve() == base:
        raise StoreError(f"utterance id {uid!r}: {problem or 'leads outside the output folder'}; nothing decoded")
    return target
