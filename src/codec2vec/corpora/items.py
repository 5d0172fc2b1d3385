"""ABX item files in the Libri-light / ZeroSpeech 2021 format, written from frame alignments and read back.

An item file has one header line, then one item per line:

    #file onset offset #phone prev-phone next-phone speaker
    sent-spk03-000012 0.4200 0.6400 AE K T spk03

`onset`/`offset` are seconds in the utterance `file` (its id); `#phone` is the centre phone (the item's label),
`prev-phone`/`next-phone` its context. Two kinds of item (`KINDS`):
  - `triphone` (Libri-light's ABX, ZeroSpeech 2021, the default): the item runs from the onset of the previous
    phone to the offset of the next one;
  - `phoneme` (zerospeech-libriabx2's on-phone mode): the item is the centre phone alone.
Items come from every phone run that is not silence and has a run on each side (any phone or silence).
A task folder holds `{split}.item` (triphone) and `{split}.phoneme.item`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write

KINDS = ("triphone", "phoneme")
HEADER = "#file onset offset #phone prev-phone next-phone speaker"
FRAME_S = 0.02  # the codec frame grid that `align` lives on (320 samples at 16 kHz)


class Item(NamedTuple):
    """One ABX item: utterance id, onset and offset in seconds, centre phone, context phones, speaker."""

    file: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str


def item_path(folder: str | Path, split: str, kind: str = "triphone") -> Path:
    """`folder/{split}.item` (triphone items) or `folder/{split}.phoneme.item`."""
    if kind not in KINDS:
        raise ConfigError(f"ABX items {kind!r}: choose one of {', '.join(KINDS)}")
    return Path(folder) / (f"{split}.item" if kind == "triphone" else f"{split}.{kind}.item")


def _token(value: Any) -> str:
    """A whitespace-free column value (speaker names may hold spaces)."""
    return "_".join(str(value).split()) or "_"


def items_from_align(
    rows: Iterable[Mapping[str, Any]], *, kind: str = "triphone", frame_s: float = FRAME_S
) -> list[Item]:
    """Items of every row with an `align` column (one phone per `frame_s` frame), in row order."""
    if kind not in KINDS:
        raise ConfigError(f"ABX items {kind!r}: choose one of {', '.join(KINDS)}")
    out: list[Item] = []
    for row in rows:
        runs: list[list[Any]] = []  # [phone, first frame, end frame]
        for t, ph in enumerate(row.get("align") or []):
            if runs and runs[-1][0] == ph:
                runs[-1][2] = t + 1
            else:
                runs.append([ph, t, t + 1])
        for (lp, ls, _), (cp, cs, ce), (rp, _, re_) in zip(runs, runs[1:], runs[2:]):
            if cp == "sil":
                continue
            s, e = (ls, re_) if kind == "triphone" else (cs, ce)
            out.append(
                Item(
                    str(row["id"]),
                    round(s * frame_s, 4),
                    round(e * frame_s, 4),
                    cp,
                    lp,
                    rp,
                    _token(row.get("speaker", "")),
                )
            )
    return out


def write_items(path: str | Path, items: Iterable[Item]) -> None:
    """The Libri-light item file (atomically)."""
    lines = [HEADER] + [f"{i.file} {i.onset:.4f} {i.offset:.4f} {i.phone} {i.prev} {i.next} {i.speaker}" for i in items]
    atomic_write(Path(path), "\n".join(lines) + "\n")


def write_item_files(
    folder: str | Path, rows_by_split: Mapping[str, list[Mapping[str, Any]]], *, frame_s: float = FRAME_S
) -> list[str]:
    """Both kinds of item file for every split whose rows have alignments; returns the names written."""
    written = []
    for split, rows in rows_by_split.items():
        if not any(r.get("align") for r in rows):
            continue
        for kind in KINDS:
            path = item_path(folder, split, kind)
            write_items(path, items_from_align(rows, kind=kind, frame_s=frame_s))
            written.append(path.name)
    return written


def read_items(path: str | Path) -> list[Item]:
    """Items of a Libri-light item file (the first line is a header); a malformed line is an error naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the item file ({e})") from None
    out: list[Item] = []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split()
        if not cols:
            continue
        try:
            if len(cols) != 7:
                raise ValueError(f"{len(cols)} columns, not 7")
            onset, offset = float(cols[1]), float(cols[2])
            if not (0 <= onset < offset):
                raise ValueError(f"onset {cols[1]} and offset {cols[2]}")
        except ValueError as e:
            raise ConfigError(f"{path}:{n}: not an item line ({e})") from None
        out.append(Item(cols[0], onset, offset, cols[3], cols[4], cols[5], cols[6]))
    return out


__all__ = ["HEADER", "KINDS", "Item", "item_path", "items_from_align", "read_items", "write_item_files", "write_items"]
