"""Audio in: read any common format, mix to mono, resample, and find the utterances of a corpus.

`load_audio(path, sample_rate) -> float32 (S,)` reads whatever libsndfile reads (wav, flac, ogg/opus, mp3,
aiff, ...), averages the channels, and resamples with soxr's band-limited (anti-aliasing) resampler. Bad
inputs raise `AudioError` naming the file and the reason: unreadable or not audio, truncated, empty, NaN
or infinite samples.

`scan_sources(srcs)` turns files, folders (searched recursively) and manifests into `AudioItem`s with
stable ids: the path relative to the folder (or manifest) without its extension, unless a manifest
gives an `id` column. Manifests: `.txt`/`.lst` (one path per line), `.tsv` (a header row with `path` and
optionally `id`; other columns are kept as per-utterance metadata) and `.jsonl` (objects with `path`
and optionally `id`; other keys are kept). Relative paths in a manifest are relative to its folder.
"""

from __future__ import annotations

import csv
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from codec2vec.errors import AudioError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64"}
)
MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".tsv", ".jsonl"})


@dataclass(frozen=True)
class AudioItem:
    """One utterance to tokenize: a stable id, the file, and metadata carried into the store's index."""

    id: str
    path: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _wav_truncation(path: str) -> str | None:
    """For RIFF/WAVE files, compare the declared data size with the bytes present (libsndfile reads a cut
    file silently, shorter). Returns a reason if the file is truncated, else None."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                ck = f.read(8)
                cid, csize = ck[:4], struct.unpack(endian + "I", ck[4:8])[0]
                if cid == b"data":
                    if csize in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                        return None
                    have = size - (pos + 8)
                    if have < csize:
                        return f"truncated: the data chunk declares {csize} bytes but only {have} are present"
                    return None
                pos += 8 + csize + (csize & 1)
            return "truncated: no complete data chunk"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"


def load_audio(path: str | os.PathLike[str], sample_rate: int | None = None) -> np.ndarray:
    """Read `path` as mono float32 `(S,)`, resampled to `sample_rate` (None keeps the file's rate).

    Raises `AudioError` with the path and the reason for unreadable, truncated, empty or non-finite input.
    """
    import soundfile as sf

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise AudioError(f"{p}: no such file")
    if os.path.getsize(p) == 0:
        raise AudioError(f"{p}: empty file (0 bytes)")
    reason = _wav_truncation(p)
    if reason:
        raise AudioError(f"{p}: {reason}")
    try:
        declared = sf.info(p).frames
        data, sr = sf.read(p, dtype="float32", always_2d=True)  # (S, C)
    except Exception as e:  # libsndfile raises its own error type with a useful message
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise AudioError(f"{p}: not readable as audio ({msg})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{p}: no samples (empty audio)")
    if 0 < data.shape[0] < declared:  # e.g. a cut MP3 whose header still announces the whole stream
        raise AudioError(f"{p}: truncated: the header announces {declared} samples, only {data.shape[0]} decode")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (S,)
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioError(f"{p}: {bad} NaN or infinite samples")
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    return np.ascontiguousarray(wav, dtype=np.float32)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of `(S,)` float audio with soxr (high quality, anti-aliased)."""
    if orig_sr == target_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def audio_duration(path: str) -> float:
    """Seconds of audio in `path` from its header (0.0 if unreadable)."""
    import soundfile as sf

    try:
        info = sf.info(path)
        return info.frames / float(info.samplerate)
    except Exception:
        return 0.0


def _id_from(rel: str) -> str:
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _scan_folder(root: Path) -> list[AudioItem]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                full = os.path.join(dirpath, name)
                items.append(AudioItem(_id_from(os.path.relpath(full, root)), full))
    return items


def _manifest_rows(path: Path) -> Iterable[dict[str, Any]]:
    ext = path.suffix.lower()
    with open(path, newline="", encoding="utf-8") as f:
        if ext == ".jsonl":
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise AudioError(f"{path}:{n}: not a JSON object ({e.msg})") from None
                    if not isinstance(row, dict) or "path" not in row:
                        raise AudioError(f"{path}:{n}: each line needs a 'path' key")
                    yield row
        elif ext == ".tsv":
            reader = csv.DictReader(f, delimiter="\t")
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise AudioError(f"{path}: a TSV manifest needs a header row with a 'path' column")
            yield from reader
        else:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield {"path": line}


def _scan_manifest(path: Path) -> list[AudioItem]:
    base = path.parent
    items = []
    for row in _manifest_rows(path):
        rel = str(row.pop("path"))
        full = rel if os.path.isabs(rel) else os.path.normpath(os.path.join(base, rel))
        uid = str(row.pop("id")) if row.get("id") not in (None, "") else _id_from(os.path.relpath(full, base))
        items.append(AudioItem(uid, full, dict(row)))
    return items


def scan_sources(srcs: Iterable[str | os.PathLike[str]]) -> list[AudioItem]:
    """Expand files, folders and manifests into utterances, in a stable order; duplicate ids are an error."""
    items: list[AudioItem] = []
    for src in srcs:
        p = Path(src)
        if p.is_dir():
            items.extend(_scan_folder(p))
        elif p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
            items.extend(_scan_manifest(p))
        elif p.exists() or p.suffix.lower() in AUDIO_EXTENSIONS:
            # A single file (kept even if missing or broken, so that it is rejected with its reason).
            items.append(AudioItem(_id_from(p.name), str(p)))
        else:
            raise AudioError(f"{p}: no such file, folder or manifest")
    seen: dict[str, str] = {}
    for it in items:
        if it.id in seen and seen[it.id] != it.path:
            raise AudioError(f"duplicate utterance id {it.id!r}: {seen[it.id]} and {it.path}")
        seen[it.id] = it.path
    # Exact repeats (same id and path, e.g. a file named twice) are kept once.
    unique: dict[str, AudioItem] = {}
    for it in items:
        unique.setdefault(it.id, it)
    return list(unique.values())
