"""The corpus lists other toolkits write, read as rows `{"id", "path", ...}` (path absolute or as the toolkit reads
it; `where` names the line for error messages), for `tokenize` and for `corpus kaldi|lhotse` task manifests.

    Kaldi data dir     DIR/wav.scp (`<utt-id> <file>`), with DIR/utt2spk -> `speaker` and DIR/text -> `text`
                       where present. Relative files are read from the current folder, as Kaldi does. A piped
                       command (`<utt-id> sox ... |`), an archive offset (`x.ark:12`) or a `segments` file (cuts
                       of longer recordings) is refused naming the line: write the audio to files first.
    fairseq / HuBERT   a `.tsv` whose first line is the root folder, then `<path>\\t<samples>` per utterance
                       (wav2vec_manifest.py); ids are the paths without their extension, in file order.
    lhotse             a `RecordingSet` or `CutSet` (`.jsonl` / `.jsonl.gz`), read with lhotse (the `lhotse`
                       extra); a cut must span its whole recording, which must be one file; its supervisions
                       give `speaker` and `text`.

Every reader raises `AudioError` (one line, the file and the reason) before anything is written.
`kaldi(src, out)` / `lhotse(src, out)` (`codec2vec corpus kaldi|lhotse`) write task folders from such a list:
`sid` (label = speaker) where every utterance has a speaker, `asr` where every one has text, both split 80/10/10
stratified by speaker; the ids are the ones `tokenize` stores from the same list.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from codec2vec.common.errors import AudioError
from codec2vec.corpora.manifest import stratified_splits, write_task

Row = dict[str, Any]
LHOTSE_KEYS = frozenset({"sources", "recording", "recording_id", "supervisions"})  # what a lhotse object has


# --- Kaldi ---------------------------------------------------------------------------------------


def _kaldi_table(path: Path) -> dict[str, str]:
    """`<key> <value...>` lines of a Kaldi table (utt2spk, text) as a dict."""
    table: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            table[key] = value.strip()
    return table


def kaldi_rows(src: Path) -> list[Row]:
    """The utterances of a Kaldi data dir (or of its `wav.scp` named directly)."""
    folder, scp = (src, src / "wav.scp") if src.is_dir() else (src.parent, src)
    if not scp.is_file():
        raise AudioError(f"{scp}: no such file (a Kaldi data dir holds wav.scp)")
    if (folder / "segments").is_file():
        raise AudioError(
            f"{folder / 'segments'}: utterances cut from longer recordings are not read; "
            "write each segment to its own file (e.g. extract-segments) and list those in wav.scp"
        )
    speakers = _kaldi_table(folder / "utt2spk") if (folder / "utt2spk").is_file() else {}
    texts = _kaldi_table(folder / "text") if (folder / "text").is_file() else {}
    rows = []
    for n, line in enumerate(scp.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), 1):
        if not line.strip():
            continue
        uid, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        where = f"{scp}:{n}"
        if not rest:
            raise AudioError(f"{where}: expected '<utterance-id> <audio file>', got {line.strip()!r}")
        if rest.endswith("|") or rest.startswith("|"):
            raise AudioError(
                f"{where}: a piped command ({rest[:60]!r}), not a file: run it to write the audio to a file "
                "and list that file"
            )
        if ".ark:" in rest or rest.endswith(".ark") or " " in rest:
            raise AudioError(f"{where}: {rest[:60]!r} is not one audio file (archives and commands are not read)")
        row: Row = {"id": uid, "path": rest, "where": where}
        if uid in speakers:
            row["speaker"] = speakers[uid]
        if uid in texts:
            row["text"] = texts[uid]
        rows.append(row)
    return rows


# --- fairseq / HuBERT ------------------------------------------------------------------------------


def is_fairseq_tsv(path: Path) -> bool:
    """A `.tsv` whose first line is one field (the root folder) rather than a header row, and whose next line,
    if any, is `path<TAB>samples` (a one-column list with a `path` or `id` header is our manifest, not fairseq's)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        first = f.readline().rstrip("\r\n")
        second = f.readline().rstrip("\r\n")
    if not first or "\t" in first or first.strip().lower() in ("path", "id"):
        return False
    return not second or (second.count("\t") == 1 and second.split("\t")[1].strip().isdigit())


def fairseq_rows(path: Path) -> list[Row]:
    """The utterances of a fairseq/HuBERT manifest: root line, then `path<TAB>samples` lines."""
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    root = lines[0].strip()
    rows = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise AudioError(f"{path}:{n}: expected '<path><TAB><samples>' after the root line, got {line[:60]!r}")
        rel = parts[0]
        uid = os.path.splitext(rel)[0].replace(os.sep, "/")
        rows.append({"id": uid, "path": os.path.join(root, rel), "where": f"{path}:{n}"})
    return rows


# --- lhotse ------------------------------------------------------------------------------------


def is_lhotse_manifest(path: Path) -> bool:
    """`.jsonl.gz`, or a `.jsonl` whose first object is a lhotse Recording or Cut (no `path` key)."""
    if path.name.lower().endswith(".jsonl.gz"):
        return True
    if not path.name.lower().endswith(".jsonl"):
        return False
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "path" not in first and bool(LHOTSE_KEYS & first.keys())
    return False


def _recording_file(rec: Any, where: str) -> str:
    if len(rec.sources) != 1 or rec.sources[0].type != "file":
        kinds = ", ".join(s.type for s in rec.sources)
        raise AudioError(f"{where}: recording {rec.id!r} is not one audio file (sources: {kinds})")
    return str(rec.sources[0].source)


def lhotse_rows(path: Path) -> list[Row]:
    """The utterances of a lhotse `RecordingSet` or `CutSet` manifest."""
    try:
        from lhotse import CutSet, RecordingSet, load_manifest
    except ImportError:
        raise AudioError(
            f"{path}: a lhotse manifest; reading it needs lhotse: pip install 'codec2vec[lhotse]'"
        ) from None
    try:
        manifest = load_manifest(path)
    except Exception as e:  # lhotse raises what its parser raises (ValueError, KeyError, JSONDecodeError...)
        raise AudioError(f"{path}: not a lhotse manifest lhotse can read ({type(e).__name__}: {e})") from None
    rows: list[Row] = []
    if isinstance(manifest, RecordingSet):
        for rec in manifest:
            rows.append({"id": rec.id, "path": _recording_file(rec, str(path)), "where": str(path)})
        return rows
    if not isinstance(manifest, CutSet):
        raise AudioError(f"{path}: a lhotse {type(manifest).__name__} has no audio; give a RecordingSet or CutSet")
    for cut in manifest:
        rec = getattr(cut, "recording", None)
        where = f"{path}: cut {cut.id!r}"
        if rec is None:
            raise AudioError(f"{where} has no recording")
        if abs(cut.start) > 1e-3 or abs(cut.duration - rec.duration) > 1e-3:
            raise AudioError(
                f"{where} covers {cut.start:g}-{cut.start + cut.duration:g} s of recording {rec.id!r} "
                f"({rec.duration:g} s); only whole-recording cuts are read"
            )
        row: Row = {"id": cut.id, "path": _recording_file(rec, where), "where": where}
        speakers = {s.speaker for s in cut.supervisions if s.speaker}
        if len(speakers) == 1:
            row["speaker"] = speakers.pop()
        text = " ".join(s.text for s in cut.supervisions if s.text)
        if text:
            row["text"] = text
        rows.append(row)
    return rows


# --- task folders ------------------------------------------------------------------------------


def read_rows(src: Path) -> list[Row] | None:
    """The rows of a Kaldi data dir or wav.scp, a fairseq/HuBERT .tsv or a lhotse manifest; None otherwise."""
    name = src.name.lower()
    if (src.is_dir() and (src / "wav.scp").is_file()) or (src.is_file() and name.endswith(".scp")):
        return kaldi_rows(src)
    if src.is_file() and name.endswith(".tsv") and is_fairseq_tsv(src):
        return fairseq_rows(src)
    if src.is_file() and is_lhotse_manifest(src):
        return lhotse_rows(src)
    return None


def _tasks(rows: list[Row], src: Path, out: Path, source: str, seed: int) -> dict[str, dict[str, Any]]:
    """`sid` and/or `asr` task folders under `out` from community rows (speaker-stratified 80/10/10 splits)."""
    import numpy as np
    import soundfile as sf

    if not rows:
        raise AudioError(f"{src}: lists no utterances")
    if not all(r.get("speaker") for r in rows):
        raise AudioError(f"{src}: every utterance needs a speaker (Kaldi utt2spk, lhotse supervisions) to split by")
    shaped = []
    for r in rows:
        path = os.path.abspath(r["path"])
        try:
            seconds = round(sf.info(path).duration, 3)
        except Exception as e:  # soundfile's RuntimeError / LibsndfileError: not audio, or missing
            raise AudioError(f"{r['where']}: {path}: unreadable audio ({e})") from None
        shaped.append({"id": r["id"], "path": path, "seconds": seconds, "speaker": r["speaker"], "text": r.get("text")})
    splits = stratified_splits([r["speaker"] for r in shaped], np.random.default_rng(seed))
    meta = {"source": source, "root": str(src), "seed": seed}
    made: dict[str, dict[str, Any]] = {}
    for task in ("sid", "asr"):
        if task == "asr" and not all(r["text"] for r in shaped):
            continue
        folder = out / task
        folder.mkdir(parents=True, exist_ok=True)
        task_rows = []
        for r, split in zip(shaped, splits):
            row = {"id": r["id"], "path": os.path.relpath(r["path"], folder), "seconds": r["seconds"], "split": split,
                   "speaker": r["speaker"]}  # fmt: skip
            if task == "sid":
                row["label"] = r["speaker"]
            else:
                row["text"] = " ".join(str(r["text"]).lower().split())
            task_rows.append(row)
        labels = (
            sorted({r["speaker"] for r in shaped})
            if task == "sid"
            else sorted({c for r in task_rows for c in r["text"]})
        )
        made[task] = write_task(folder, task, task_rows, labels=labels, meta=meta)
    return made


def kaldi(root: str | Path, out: str | Path, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """A Kaldi data dir (wav.scp + utt2spk [+ text]) -> OUT/sid [+ OUT/asr]."""
    root = Path(root)
    if not root.exists():
        raise AudioError(f"{root}: no such Kaldi data dir")
    return _tasks(kaldi_rows(root), root, Path(out), "Kaldi data dir", seed)


def lhotse(root: str | Path, out: str | Path, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """A lhotse CutSet manifest (supervisions with speakers [+ text]) -> OUT/sid [+ OUT/asr]."""
    root = Path(root)
    if not root.is_file():
        raise AudioError(f"{root}: no such lhotse manifest")
    return _tasks(lhotse_rows(root), root, Path(out), "lhotse", seed)
