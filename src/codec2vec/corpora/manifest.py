"""Task manifests: the one format that synthetic corpora (`synth.py`) and real-dataset loaders (`datasets.py`) write.

A corpus folder holds one sub-folder per task, each with `train.jsonl`, `dev.jsonl`, `test.jsonl` and `meta.json`:

    OUT/pr/train.jsonl   one JSON object per line (an utterance), in a fixed order
    OUT/pr/meta.json     {"task", "splits": {split: rows}, "labels" (the label vocabulary), "seed", "generator", ...}
    OUT/pr/test.item     ABX items in the Libri-light format where rows have `align` (dev too; `items.py`)

Every row has
    id        stable, unique string (the same audio keeps the same id in every task that uses it)
    path      audio file, relative to the manifest's folder (e.g. "../audio/sent/sent-spk03-000012.flac")
    seconds   duration (float, 3 decimals)
    split     "train" | "dev" | "test"
and the label fields of its task:
    pr, asr   speaker, text (lower case, single spaces), phones (list, `espeak.PHONES` without "sil"),
              align (synthetic data: one phone of `PHONES` per 20 ms frame, len == ceil(samples / 320) at 16 kHz)
    sid       speaker, label (= the speaker id)
    ks        label (one of the 10 keywords, "_unknown_", "_silence_"), text
    ic        action, object, location (Fluent Speech Commands' slot values), label ("action|object|location"), text
    style/er  label (speaking style or emotion class), speaker, text
Other columns may appear; readers must ignore what they do not know. The token store (`codec2vec tokenize`)
reads `id` and `path` and carries the other columns along as per-utterance metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from codec2vec.common.errors import Codec2VecError, ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.corpora.items import FRAME_S, write_item_files

SPLITS: tuple[str, ...] = ("train", "dev", "test")
REQUIRED = ("id", "path", "seconds", "split")


def dumps_row(row: Mapping[str, Any]) -> str:
    """One manifest line: compact, UTF-8, key order kept (so identical inputs give identical bytes)."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def write_task(
    folder: str | Path,
    task: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    labels: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    frame_rate: float | None = None,
) -> dict[str, Any]:
    """Write `folder/{train,dev,test}.jsonl` and `folder/meta.json` for one task; returns the meta dict.

    Rows keep their given order within each split. `labels` is the task's label vocabulary (written to meta
    in the given order); `meta` adds free keys (seed, generator version, source root...); `frame_rate` is the
    codec frame grid that frame-level columns (`align`) live on, when the rows have them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    seconds: dict[str, float] = {s: 0.0 for s in SPLITS}
    seen: set[str] = set()
    aligned: dict[str, list[Mapping[str, Any]]] = {"dev": [], "test": []}  # PR's ABX items
    for row in rows:
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise Codec2VecError(f"{folder}: row {row.get('id', '?')!r} lacks {', '.join(missing)}")
        if row["split"] not in by_split:
            raise Codec2VecError(f"{folder}: row {row['id']!r} has split {row['split']!r}, not one of {SPLITS}")
        if row["id"] in seen:
            raise Codec2VecError(f"{folder}: id {row['id']!r} appears twice")
        seen.add(row["id"])
        by_split[row["split"]].append(dumps_row(row))
        seconds[row["split"]] += float(row["seconds"])
        if task == "pr" and row["split"] in aligned and row.get("align"):
            aligned[row["split"]].append(row)
    for split, lines in by_split.items():
        atomic_write(folder / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    info: dict[str, Any] = {
        "task": task,
        "splits": {s: len(v) for s, v in by_split.items()},
        "hours": {s: round(seconds[s] / 3600, 4) for s in SPLITS},
        "labels": list(labels) if labels is not None else None,
        "frame_rate": frame_rate,
    }
    info.update(meta or {})
    frame_s = 1.0 / frame_rate if frame_rate else FRAME_S
    info["abx_items"] = write_item_files(folder, aligned, frame_s=frame_s) if task == "pr" else []
    atomic_write(folder / "meta.json", json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return info


def stratified_splits(keys: list[str], rng: np.random.Generator) -> list[str]:
    """80/10/10 splits stratified by key: the items of each key (shuffled) are dealt in turn from one running
    cycle of 10 slots (8 train, 1 dev, 1 test) with a random phase, so a key with >= 10 items is in every split
    and small keys still spread over the splits."""
    splits = [""] * len(keys)
    r = int(rng.integers(10))
    for key in sorted(set(keys)):
        for i in rng.permutation([i for i, k in enumerate(keys) if k == key]).tolist():
            splits[i] = {8: "dev", 9: "test"}.get(r % 10, "train")
            r += 1
    return splits


def speaker_splits(speakers: list[str], all_speakers: list[str], rng: np.random.Generator) -> list[str]:
    """Speaker-disjoint splits: ~10% of the speakers (at least one) for dev, as many for test."""
    if len(all_speakers) < 3:
        raise ConfigError(f"split_by=speaker: needs at least 3 speakers, got {len(all_speakers)}")
    order = rng.permutation(sorted(all_speakers)).tolist()
    n = max(1, round(0.1 * len(order)))
    which = {s: "test" for s in order[:n]} | {s: "dev" for s in order[n : 2 * n]}
    return [which.get(s, "train") for s in speakers]


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """`(line number, value)` of every non-blank line of a JSONL file; a line that is not JSON is a one-line
    error naming `path:line`."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise Codec2VecError(f"{path}:{n}: not JSON ({e.msg})") from None
            yield n, value


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read one JSONL manifest; `path` of each row is made absolute (resolved against the manifest's folder)."""
    path = Path(path)
    rows = []
    for n, row in jsonl_rows(path):
        missing = [k for k in ("id", "path") if not isinstance(row, dict) or k not in row]
        if missing:
            raise Codec2VecError(f"{path}:{n}: row lacks {', '.join(missing)}")
        row["path"] = str((path.parent / row["path"]).resolve())
        rows.append(row)
    return rows


def frame_labels(rows: Iterable[Mapping[str, Any]], vocab: Sequence[str], key: str = "align") -> dict[str, list[int]]:
    """Per-utterance frame labels as class indices of `vocab` (e.g. `espeak.PHONES`), ready for a token store."""
    index = {v: i for i, v in enumerate(vocab)}
    out = {}
    for row in rows:
        try:
            out[row["id"]] = [index[x] for x in row[key]]
        except KeyError as e:
            raise Codec2VecError(f"utterance {row.get('id')!r}: label {e} missing from the vocabulary") from None
    return out
