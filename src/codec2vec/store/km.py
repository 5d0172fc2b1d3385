"""A store's label sets in the files HuBERT's fairseq recipe reads and writes, both ways.

`export_km(store, name, out, split)` writes into the folder `out`:
  - `{split}.km`: one line per utterance, its frame labels separated by spaces, in the store's order;
  - `{split}.ids`: the utterance ids, one per line, in the same order (the order made explicit);
  - `{split}.tsv`: fairseq's audio manifest (a root line, then `relative path<TAB>samples at 16 kHz`) in the same
    order, when every utterance has its source path (never for a private store);
  - `dict.km.txt`: fairseq's dictionary, `<label> <count>` for every class 0..C-1.
`import_km(store, km, name, ids=...|tsv=...)` reads such a `.km` file back into a label set (through the store's
label writer: atomic, recorded in `contents.json`); each line must hold exactly the utterance's frame count of
labels in [0, C), C from the `dict.km.txt` beside the `.km` file (else the largest label + 1). Errors name the
file and line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_write, check_outside
from codec2vec.store.labels import check_label_name
from codec2vec.store.store import TokenStore

TSV_RATE = 16000  # samples per second in the fairseq manifest (HuBERT's audio rate)


def split_ids(store: TokenStore, split: str) -> list[str]:
    """The store's ids in storage order; with `split` other than `all`, those whose manifest `split` is it."""
    ids = list(store.ids())
    if split == "all":
        return ids
    chosen = [i for i in ids if str(store.entry(i).get("extra", {}).get("split", "")) == split]
    if not chosen:
        raise StoreError(f"{store.root}: no utterance has split {split!r} (use --split all for every utterance)")
    return chosen


def _tsv(store: TokenStore, ids: list[str]) -> str | None:
    """fairseq's manifest for `ids` (root line, then relative path TAB samples), or None without source paths."""
    entries = [store.entry(i) for i in ids]
    sources = [str(e.get("source", "")) for e in entries]
    if not ids or any(not s or not os.path.isabs(s) for s in sources):
        return None
    root = os.path.commonpath([os.path.dirname(s) for s in sources])
    rows = [f"{os.path.relpath(s, root)}\t{round(float(e['seconds']) * TSV_RATE)}" for s, e in zip(sources, entries)]
    return "\n".join([root, *rows]) + "\n"


def export_km(store: TokenStore, name: str, out: str | Path, split: str = "all") -> dict[str, Any]:
    """Write `{split}.km`, `{split}.ids`, `{split}.tsv` (when the sources are known) and `dict.km.txt` of label set
    `name` into the folder `out` (never inside the store). Every chosen utterance must have labels. Returns a summary."""
    check_outside({"--out": out}, [store.root])
    labels = store.labels(name)
    ids = split_ids(store, split)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise StoreError(
            f"{store.root}: label set {name!r} has no labels for {len(missing)} of {len(ids)} utterances "
            f"(first: {missing[0]!r}); HuBERT needs one line per utterance"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: not a folder")
    counts = np.zeros(labels.num_classes, dtype=np.int64)
    lines = []
    for uid in ids:
        lab = labels[uid].numpy()
        counts += np.bincount(lab, minlength=labels.num_classes)
        lines.append(" ".join(map(str, lab.tolist())))
    written = {"km": out / f"{split}.km", "ids": out / f"{split}.ids", "dict": out / "dict.km.txt"}
    atomic_write(written["km"], "".join(x + "\n" for x in lines))
    atomic_write(written["ids"], "".join(i + "\n" for i in ids))
    atomic_write(written["dict"], "".join(f"{c} {int(n)}\n" for c, n in enumerate(counts)))
    tsv = _tsv(store, ids)
    if tsv is not None:
        written["tsv"] = out / f"{split}.tsv"
        atomic_write(written["tsv"], tsv)
    return {"utterances": len(ids), "classes": labels.num_classes, "files": {k: str(v) for k, v in written.items()}}


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: cannot be read ({e})") from None


def _ids_from_tsv(store: TokenStore, tsv: Path) -> list[str]:
    """Store ids for the rows of a fairseq manifest, by source path (or by id = the path without its suffix)."""
    lines = _read_lines(tsv)
    if not lines:
        raise StoreError(f"{tsv}: empty; a fairseq manifest starts with its root folder")
    root = lines[0].strip()
    by_source = {os.path.normpath(str(store.entry(i).get("source", ""))): i for i in store.ids()}
    ids = []
    for n, line in enumerate(lines[1:], start=2):
        rel = line.split("\t")[0].strip()
        uid = by_source.get(os.path.normpath(os.path.join(root, rel)))
        if uid is None and os.path.splitext(rel)[0] in store:
            uid = os.path.splitext(rel)[0]
        if uid is None:
            raise StoreError(f"{tsv}:{n}: {rel!r} is not an utterance of {store.root} (by source path or id)")
        ids.append(uid)
    return ids


def _num_classes(km: Path, rows: list[np.ndarray]) -> int:
    """C from the `dict.km.txt` beside the `.km` file (its largest label + 1), else from the labels."""
    d = km.parent / "dict.km.txt"
    top = max((int(r.max()) for r in rows if r.size), default=-1)
    if not d.is_file():
        return top + 1
    symbols = []
    for n, line in enumerate(_read_lines(d), start=1):
        try:
            symbols.append(int(line.split()[0]))
        except (ValueError, IndexError):
            raise StoreError(f"{d}:{n}: expected '<label> <count>', got {line!r}") from None
    c = max(symbols, default=-1) + 1
    if top >= c:
        raise StoreError(f"{km}: label {top} is not in {d} (classes 0..{c - 1})")
    return c


def import_km(
    store: TokenStore, km: str | Path, name: str, *, ids: str | Path | None = None, tsv: str | Path | None = None
) -> dict[str, Any]:
    """Read a HuBERT `.km` file (one line of labels per utterance) into label set `name`; the utterances are the
    lines of the `ids` file or the rows of the fairseq `tsv` manifest, in order. Returns a summary."""
    check_label_name(name)
    km = Path(km)
    if (ids is None) == (tsv is None):
        raise StoreError("labels import: give the utterance order with exactly one of --ids FILE or --tsv FILE")
    order = [x.strip() for x in _read_lines(Path(ids))] if ids is not None else _ids_from_tsv(store, Path(tsv or ""))
    lines = _read_lines(km)
    if len(lines) != len(order):
        raise StoreError(f"{km}: {len(lines)} lines for {len(order)} utterances in {ids or tsv}")
    rows: dict[str, np.ndarray] = {}
    for n, (uid, line) in enumerate(zip(order, lines), start=1):
        if uid not in store:
            raise StoreError(f"{ids or tsv}:{n}: no utterance {uid!r} in {store.root}")
        if uid in rows:
            raise StoreError(f"{ids or tsv}:{n}: {uid!r} listed twice")
        try:
            lab = np.array([int(x) for x in line.split()], dtype=np.int64)
        except ValueError:
            raise StoreError(f"{km}:{n}: labels must be whole numbers separated by spaces") from None
        if lab.size != store.num_frames(uid):
            raise StoreError(f"{km}:{n}: {lab.size} labels for {uid!r}, which has {store.num_frames(uid)} frames")
        if lab.size and lab.min() < 0:
            raise StoreError(f"{km}:{n}: negative label {int(lab.min())}")
        rows[uid] = lab
    classes = _num_classes(km, list(rows.values()))
    fp = store.write_labels(name, rows, classes, info={"source": "imported HuBERT .km", "file": km.name})
    return {"name": name, "utterances": len(rows), "classes": classes, "fingerprint": fp}


__all__ = ["export_km", "import_km", "split_ids"]
