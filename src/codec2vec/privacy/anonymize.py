"""`codec2vec anonymize`: a new, anonymised token store from an existing one (the original is never written to).

Two transformations, alone or together, applied utterance by utterance into a store built in a hidden folder
beside `out` and renamed into place at the end (a killed run leaves nothing half-made, and its hidden folder is
removed by the next run; no output, key or id map may lie inside the source store):

- level truncation (`levels=n`): keep the first n residual levels. The codes equal what the codec gives at n
  levels (residual quantisation is greedy), so the store is an ordinary n-level store. It does NOT stop
  decoding: Lyra's public decoder still gives log-spectrogram correlations of ~0.87 with the source at 4 levels.
- keyed scrambling (`key`): level k's code v becomes `perm_k[v]`, one secret permutation per level derived
  from a 256-bit key (`keys.permutations`: HMAC-SHA256-driven Fisher-Yates). With the key, `unscramble=True`
  restores the codes exactly; the store's meta holds only the scheme and a key fingerprint.

Threat model, honestly:
- Protects against: someone who holds the store and the public codec and simply decodes it. Without the key
  the decoder gets wrong codebook rows at every level: the audio is no closer to its source than an unrelated
  utterance of another speaker is (the audit measures both).
- Does NOT protect against:
  (1) speaker identification from the tokens when the attacker can label a few of the store's own utterances:
      a permutation per level changes which index means what, not which frames share an index, so per-level
      code histograms (or any model trained on the scrambled tokens) identify speakers exactly as well as on
      clear codes (measured: 0.772 on both, chance 0.087). Level truncation lowers it only somewhat (0.762 at
      16 levels, 0.566 at 4). A probe trained on the attacker's clear tokens of the same speakers does fall
      to chance on scrambled codes (0.05-0.10), until the frequency attack below undoes part of the key.
  (2) frequency analysis: this is a substitution cipher on 16 (Lyra) to 2048 symbols per level. An attacker
      who tokenizes some speech of their own with the public codec ranks each level's codes by frequency and
      matches the ranks (`leakage.frequency_attack`). Measured (`benchmarks/privacy_audit.py`, Lyra at 46
      levels, 12 synthetic speakers, the attacker's own 4 speakers, 2 keys): 39-43% of codes come out right and
      the decoded audio is back at a log-spectrogram correlation of 0.72-0.75 with its source (clear codes 0.89,
      unrelated floor 0.34). Scrambling stops naive decoding, not a determined attacker; a fixed per-level
      substitution is exactly what lets the keyed model train as on clear codes, so no stronger cipher keeps
      that property with a per-level embedding table.
  (3) the codebook vectors. Codec-initialised embeddings indexed by scrambled codes are the public codebook
      rows permuted, and matching them against the public codec's table reveals every permutation. So a
      scrambled store carries the PUBLIC, unpermuted table (it reveals nothing the codec does not), and the
      keyed initialisation happens at training time in the key holder's process (`data.codebook_key=FILE`,
      `keyed_init`). A checkpoint trained that way holds the permuted rows: treat it like the key.
  Training without the key (a third party) starts from randomly initialised embeddings (`keyed_init` with no
  key): the paper reports that the codec initialisation helped "significantly", so expect a weaker model.
- Label sets are not carried over: k-means labels of the clear latent would describe the clear codes.
- Paths are dropped (`source` emptied) and only the allowed manifest columns are kept (`keep`, default
  `split`); ids are kept (the audit lists them) unless `id_key` is given (`--private`): then they become keyed
  hashes as in a private store (`private.py`), with the map back written outside the store.

Shapes: codes `(K, T)` per utterance in, `(n, T)` out; permutations `(K, V)`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codec2vec.codecs.base import config_hash
from codec2vec.common.errors import StoreError
from codec2vec.common.files import TMP_DIR_MARK, check_outside, exclusive_lock
from codec2vec.common.options import option
from codec2vec.pretrain.pretrainer import Pretrainer
from codec2vec.pretrain.targets.reconstruction import ReconstructionTarget
from codec2vec.privacy.keys import (
    SCHEME,
    PrivacyError,
    key_check,
    keyed_id,
    load_key,
    permutations,
    scramble,
    unscramble,
    write_secret,
)
from codec2vec.privacy.private import read_id_map
from codec2vec.store import TokenStore
from codec2vec.store.layout import check_free, clean_builds, publish

DEFAULT_KEEP = ("split",)


def _check_key(store: TokenStore, key: bytes) -> None:
    info = store.meta.get("scrambled") or {}
    if info.get("key_check") != key_check(key):
        raise PrivacyError(f"{store.root}: scrambled with another key (the key's fingerprint does not match)")


def _new_meta(src: TokenStore, levels: int, scrambled: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The new store's CodecInfo and the privacy fields of its meta."""
    info = src.codec
    if levels != info.num_codebooks:
        cfg = dict(info.config, num_codebooks=levels)
        info = replace(info, num_codebooks=levels, config=cfg, config_hash=config_hash(cfg))
    extra: dict[str, Any] = {"anonymized": {"levels_kept": levels, "levels_of_source": src.codec.num_codebooks}}
    if src.meta.get("private"):
        extra["private"] = src.meta["private"]
    if scrambled:
        extra["scrambled"] = scrambled
    return info, extra


def _codes_mode(
    store: TokenStore, n: int, key: bytes | None, unscramble_codes: bool
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """(permutations to apply or undo, the new store's `scrambled` meta) for the requested transformation."""
    was = store.meta.get("scrambled")
    if unscramble_codes:
        if key is None or not was:
            raise PrivacyError(f"{store.root}: --unscramble needs a scrambled store and its --scramble-key")
        _check_key(store, key)
        return permutations(key, n, store.codec.codebook_size), None
    if key is not None:
        if was:
            raise PrivacyError(f"{store.root}: already scrambled; unscramble it first")
        return permutations(key, n, store.codec.codebook_size), {"scheme": SCHEME, "key_check": key_check(key)}
    return None, was  # truncating a scrambled store keeps it scrambled (the permutations are per level)


def _keyed_ids(store: TokenStore, out: Path, id_key: bytes, id_map: str | os.PathLike[str] | None) -> dict[str, str]:
    """Old id -> keyed id; the map back (with the old paths) is merged into `id_map`, outside `out`."""
    if id_map is None or Path(id_map).resolve().is_relative_to(out.resolve()):
        raise PrivacyError(f"--id-map {id_map}: needed with a private key, and outside the store {out}")
    rename = {uid: keyed_id(id_key, uid) for uid in store.ids()}
    rows = read_id_map(id_map)
    rows.update({h: {"id": h, "source_id": u, "path": store.entry(u).get("source", "")} for u, h in rename.items()})
    write_secret(id_map, "".join(json.dumps(r) + "\n" for r in rows.values()).encode())
    return rename


@dataclass(frozen=True)
class AnonymizeOptions:
    """What `codec2vec anonymize` does (its flags, made from these fields by `cli/flags.py`)."""

    levels: int | None = option(None, help="keep only the first N codebook levels")
    scramble_key: str | None = option(None, help="key file (created 0600 if absent): secret code permutation")
    unscramble: bool = option(False, help="restore a scrambled store's codes with its key")
    keep: tuple[str, ...] = option(DEFAULT_KEEP, help="manifest columns to keep (comma-separated; paths never kept)")
    private: bool = option(False, help="ids become keyed hashes, as tokenize --private")
    private_key: str | None = option(None, help="--private: key file (created 0600; default OUT.key)")
    id_map: str | None = option(None, help="--private: hashed id -> old id map (default OUT.ids.jsonl)")


def anonymize_store(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    levels: int | None = None,
    key: bytes | None = None,
    unscramble_codes: bool = False,
    keep: tuple[str, ...] = DEFAULT_KEEP,
    id_key: bytes | None = None,
    id_map: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write the anonymised copy of store `src` to the new store `out`: first `levels` levels, codes scrambled
    with `key` (or, with `unscramble_codes`, a scrambled store restored with its key); with `id_key`, ids become
    keyed hashes as in a private store (the map back to the old ids and paths is written to `id_map`, outside
    `out`), durations go on the frame grid and file sizes are dropped. Returns a summary."""
    check_outside({"--out": out, "--id-map": id_map}, [src])  # the source store is never written
    store = TokenStore.open(src)
    k = store.codec.num_codebooks
    n = k if levels is None else int(levels)
    if not 1 <= n <= k:
        raise StoreError(f"--levels {n}: the store {src} has 1..{k} levels")
    perms, scrambled = _codes_mode(store, n, key, unscramble_codes)
    info, extra_meta = _new_meta(store, n, scrambled)
    out = Path(out)
    if out.resolve() == store.root.resolve():
        raise StoreError(f"--out {out}: must be a new store, not the source")
    check_free(out)
    rename = None
    if id_key is not None:
        rename = _keyed_ids(store, out, id_key, id_map)
        extra_meta["private"] = {"ids": "hmac-sha256", "key_check": key_check(id_key), "columns_kept": list(keep)}
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_builds(out)  # what a killed run left (a build folder whose lock nobody holds)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{TMP_DIR_MARK}anon-"))
    try:
        with exclusive_lock(building / ".lock"):  # held until the end: `clean_builds` leaves a live build alone
            new = TokenStore.create(building / "store", info, store.codebook_vectors()[:n], coding=store.coding)
            new.update_meta(dict(new.meta, **extra_meta))  # keeps meta.json's SHA-256 in contents.json true
            _copy_codes(store, TokenStore.open(new.root), n, perms, unscramble_codes, keep, rename)
            (new.root / ".lock").unlink(missing_ok=True)
            publish(new.root, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return {"source_utterances": len(store), "utterances": len(TokenStore.open(out)), "levels": n, "of": k,
            "scrambled": bool(scrambled), "unscrambled": unscramble_codes, "private": bool(extra_meta.get("private")),
            "out": str(out)}  # fmt: skip


def _copy_codes(
    src: TokenStore,
    dst: TokenStore,
    n: int,
    perms: np.ndarray | None,
    inverse: bool,
    keep: tuple[str, ...],
    rename: dict[str, str] | None,
) -> None:
    ids = sorted(src.ids(), key=rename.__getitem__) if rename else src.ids()  # private: order of hashed ids
    with dst.writer() as w:
        for uid in ids:
            codes = src.read_numpy(uid)[:n]  # (n, T)
            if perms is not None:
                codes = np.asarray(unscramble(codes, perms) if inverse else scramble(codes, perms))
            e = src.entry(uid)
            extra = {c: v for c, v in (e.get("extra") or {}).items() if c in keep}
            seconds, size = e["seconds"], e.get("source_bytes", 0)
            if rename:
                seconds, size = e["frames"] / src.codec.frame_rate, 0  # as in a private store
            w.add(rename[uid] if rename else uid, codes, seconds=seconds, source="", source_bytes=size, extra=extra)
            if w.seconds >= 600.0:
                w.commit()


# --- training on scrambled codes ----------------------------------------------------------------------------


def _permute_rows(weight: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """`(K*V, ...)` rows of level k, entry v moved to row k*V + perms[k, v]."""
    k, v = perms.shape
    w = weight.view(k, v, *weight.shape[1:])
    out = torch.empty_like(w)
    out[torch.arange(k)[:, None], perms] = w  # (K, V, ...)
    return out.view_as(weight)


def keyed_init(model: Pretrainer, store: TokenStore, key_file: str | None) -> None:
    """Make a freshly built `Pretrainer` for a scrambled store train exactly as it would on the clear codes:
    with the key, the codec-initialised embedding rows and the reconstruction heads' class rows are permuted like
    the codes (so every logit and gradient is the clear run's, permuted). Without the key (a third party), the
    embedding table is re-initialised at random, since the public rows do not match scrambled codes."""

    enc = model.encoder
    if not store.meta.get("scrambled"):
        if key_file:
            raise PrivacyError(f"data.codebook_key: the store {store.root} is not scrambled")
        return
    if not key_file:
        print(f"{store.root}: scrambled store and no data.codebook_key: embeddings start at random", file=sys.stderr)
        with torch.no_grad():
            nn.init.normal_(enc.table, std=1.0 / enc.num_codebooks**0.5)
        return
    key = load_key(key_file)
    _check_key(store, key)
    perms = torch.from_numpy(permutations(key, enc.num_codebooks, enc.codebook_size))  # (K, V)
    with torch.no_grad():
        enc.table.copy_(_permute_rows(enc.table, perms))
        for target in model.targets:
            if isinstance(target, ReconstructionTarget):
                target.head.weight.copy_(_permute_rows(target.head.weight, perms))
                target.head.bias.copy_(_permute_rows(target.head.bias, perms))
