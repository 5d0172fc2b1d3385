"""Audio in: read any common format, mix to mono, resample, and find the utterances of a corpus.

`load_audio(path, sample_rate) -> float32 (S,)` reads whatever libsndfile reads (wav, flac, ogg/opus, mp3,
aiff, ...), averages the channels, and resamples with soxr's band-limited (anti-aliasing) resampler. Bad
inputs raise `AudioError` naming the file and the reason: unreadable or not audio, truncated, empty, NaN
or infinite samples.

`scan_sources(srcs)` turns files, folders (searched recursively) and manifests into `AudioItem`s with
stable ids: the path relative to the folder (or manifest) without its extension, unless a manifest
gives an `id` column. Manifests: `.txt`/`.lst` (one path per line), `.tsv` (a header row with `path` and
optionally `id`; other columns are kept as per-utterance metadata) and `.jsonl` (objects with `path`
and optionally `id`; other keys are kept); and the community's lists (`corpora/community.py`): Kaldi data dirs
(`wav.scp`, `utt2spk`, `text`), fairseq/HuBERT `.tsv` (a root line first) and lhotse manifests. A missing
input, or a file that is neither audio nor a manifest, is an error before anything is written. Relative paths in a manifest are relative to its folder; a
derived id drops leading '..' parts (`../audio/a.wav` -> `audio/a`). Ids must be safe relative paths
(`store.layout.id_problem`): an item whose id is not keeps the reason in `problem`, naming the manifest line,
and `tokenize` rejects it. Folder scans enter each folder once (link loops end) and list each file once.
"""

from __future__ import annotations

import csv
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from codec2vec.common.errors import AudioError
from codec2vec.corpora.community import read_rows
from codec2vec.store.layout import id_problem

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
    problem: str | None = field(default=None, compare=False, hash=False)  # why its id cannot be stored


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


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000  # Hz a header may claim (telephone band .. 384 kHz studio)
MAX_CHANNELS = 64
MAX_SECONDS = 4 * 3600.0  # default bound on one file's duration (`tokenize --max-hours`)
STREAM_SECONDS = 60.0  # longer files are read, mixed and resampled in blocks
BLOCK_SECONDS = 10.0  # ... of this many seconds (or STREAM_SECONDS when that is smaller: tests)


def header_problem(sample_rate: int, channels: int, frames: int, max_seconds: float = MAX_SECONDS) -> str | None:
    """Why a header's claims cannot be honoured (None when they can): checked before any sample is read, so
    a 10 KB file that claims 1 Hz (to be resampled to 16 kHz) or a week of audio never allocates gigabytes."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        return f"sample rate {sample_rate} Hz outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"{channels} channels (at most {MAX_CHANNELS})"
    if frames / sample_rate > max_seconds:
        return f"{frames / sample_rate / 3600:.2f} h of audio, more than the {max_seconds / 3600:g} h allowed"
    return None


def _check_file(p: str) -> None:
    if not os.path.exists(p):
        raise AudioError(f"{p}: no such file")
    if not os.path.isfile(p):  # a device (a link to /dev/zero), a FIFO, a socket, a folder: never read
        kind = "a folder" if os.path.isdir(p) else "a device, FIFO or socket"
        raise AudioError(f"{p}: not a regular file ({kind})")
    if os.path.getsize(p) == 0:
        raise AudioError(f"{p}: empty file (0 bytes)")
    reason = _wav_truncation(p)
    if reason:
        raise AudioError(f"{p}: {reason}")


def load_audio(
    path: str | os.PathLike[str], sample_rate: int | None = None, *, max_seconds: float = MAX_SECONDS
) -> np.ndarray:
    """Read `path` as mono float32 `(S,)`, resampled to `sample_rate` (None keeps the file's rate).

    Raises `AudioError` with the path and the reason for unreadable, truncated, empty or non-finite input,
    and for headers outside `header_problem`'s bounds. Files over a minute are read, mixed to mono and
    resampled in blocks, so memory stays near the size of the mono output. Non-UTF-8 file names work.
    """
    import soundfile as sf

    p = os.fspath(path)
    _check_file(p)
    try:
        with sf.SoundFile(os.fsencode(p)) as f:  # bytes: libsndfile opens any file name, UTF-8 or not
            sr, declared = int(f.samplerate), int(f.frames)
            problem = header_problem(sr, int(f.channels), declared, max_seconds)
            if problem:
                raise AudioError(f"{p}: {problem}")
            wav = _read_mono(f, sr, sample_rate or sr, p)
    except AudioError:
        raise
    except Exception as e:  # libsndfile raises its own error type with a useful message
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise AudioError(f"{p}: not readable as audio ({msg})") from None
    return np.ascontiguousarray(wav, dtype=np.float32)


def _read_mono(f: Any, sr: int, out_sr: int, p: str) -> np.ndarray:
    """The open file's samples, mixed to mono and resampled to `out_sr`: whole for short files (one-shot
    soxr), in blocks for long ones (`_blocks`, into a preallocated output)."""
    declared = int(f.frames)
    if declared > STREAM_SECONDS * sr:
        out = np.empty(int(np.ceil(declared * out_sr / sr)) + 64, dtype=np.float32)  # (S_out,) and a margin
        n = 0
        for piece in _blocks(f, sr, out_sr, p):
            out, n = _append(out, n, piece)
        return out[:n]
    data = f.read(dtype="float32", always_2d=True)  # (S, C)
    if data.shape[0] == 0:
        raise AudioError(f"{p}: no samples (empty audio)")
    if data.shape[0] < declared:  # e.g. a cut MP3 whose header still announces the whole stream
        raise AudioError(f"{p}: truncated: the header announces {declared} samples, only {data.shape[0]} decode")
    wav = _finite(p, data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])  # (S,)
    return resample(wav, sr, out_sr) if out_sr != sr else wav


def _blocks(f: Any, sr: int, out_sr: int, p: str) -> Iterator[np.ndarray]:
    """Mono blocks `(S_b,)` float32 at `out_sr` of an open file, `BLOCK_SECONDS` at a time (soxr's stream
    resampler carries its state across blocks); AudioError for NaN, empty or truncated audio."""
    import soxr

    stream = soxr.ResampleStream(sr, out_sr, 1, dtype="float32", quality="HQ") if out_sr != sr else None
    got = 0
    size = max(1, int(min(BLOCK_SECONDS, STREAM_SECONDS) * sr))
    for block in f.blocks(blocksize=size, dtype="float32", always_2d=True):  # (S_b, C)
        got += block.shape[0]
        mono = _finite(p, block.mean(axis=1) if block.shape[1] > 1 else block[:, 0])
        yield stream.resample_chunk(mono, last=False) if stream is not None else mono
    if got == 0:
        raise AudioError(f"{p}: no samples (empty audio)")
    if got < int(f.frames):
        raise AudioError(f"{p}: truncated: the header announces {int(f.frames)} samples, only {got} decode")
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def audio_blocks(
    path: str | os.PathLike[str], sample_rate: int, *, max_seconds: float = MAX_SECONDS
) -> Iterator[np.ndarray]:
    """`load_audio` in pieces: mono float32 blocks at `sample_rate` whose concatenation is what `load_audio`
    returns for a long file, with the same checks (AudioError), holding one block at a time."""
    import soundfile as sf

    p = os.fspath(path)
    _check_file(p)
    try:
        f = sf.SoundFile(os.fsencode(p))
    except Exception as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise AudioError(f"{p}: not readable as audio ({msg})") from None
    with f:
        problem = header_problem(int(f.samplerate), int(f.channels), int(f.frames), max_seconds)
        if problem:
            raise AudioError(f"{p}: {problem}")
        yield from _blocks(f, int(f.samplerate), sample_rate, p)


def _finite(p: str, wav: np.ndarray) -> np.ndarray:
    if not np.isfinite(wav).all():
        raise AudioError(f"{p}: {int((~np.isfinite(wav)).sum())} NaN or infinite samples")
    return wav


def _append(out: np.ndarray, n: int, piece: np.ndarray) -> tuple[np.ndarray, int]:
    if n + piece.shape[0] > out.shape[0]:  # the header under-announced: grow
        out = np.concatenate([out[:n], np.empty(max(piece.shape[0], out.shape[0] // 4), np.float32)])
    out[n : n + piece.shape[0]] = piece
    return out, n + piece.shape[0]


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
        info = sf.info(os.fsencode(path))
        return info.frames / float(info.samplerate)
    except Exception:
        return 0.0


def _id_from(rel: str) -> str:
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _derived_id(rel: str) -> str:
    parts = _id_from(rel).split("/")
    while parts and parts[0] == "..":
        parts.pop(0)
    return "/".join(parts)


def _scan_folder(root: Path) -> list[AudioItem]:
    """Audio files under `root`, following links but entering each folder (device, inode) once and listing
    each file once, so link loops (`a/up -> ..`) end and a linked-twice file is stored once."""
    items = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames.clear()
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                full = os.path.join(dirpath, name)
                try:
                    fst = os.stat(full)
                    key = (fst.st_dev, fst.st_ino)
                except OSError:  # a dangling link: kept, to be rejected with its reason
                    key = (-1, len(seen_files))
                if key in seen_files:
                    continue
                seen_files.add(key)
                uid = _id_from(os.path.relpath(full, root))
                items.append(AudioItem(uid, full, problem=_id_reason(full, uid)))
    return items


def _id_reason(where: str, uid: str) -> str | None:

    problem = id_problem(uid)
    return f"{where}: {problem}" if problem else None


def manifest_rows(path: Path) -> Iterable[dict[str, Any]]:
    """The rows of a manifest (`.txt`, `.tsv`, `.jsonl` and the community lists), each a dict with `path` and
    the columns it gives: what `scan_sources` reads, for callers that need the raw columns (the privacy audit)."""
    for _, row in _numbered_rows(path):
        yield row


def _numbered_rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, row) of a manifest."""
    ext = path.suffix.lower()
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        if ext == ".jsonl":
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise AudioError(f"{path}:{n}: not a JSON object ({e.msg})") from None
                    if not isinstance(row, dict) or "path" not in row:
                        raise AudioError(f"{path}:{n}: each line needs a 'path' key")
                    yield n, row
        elif ext == ".tsv":
            reader = csv.DictReader(f, delimiter="\t")
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise AudioError(f"{path}: a TSV manifest needs a header row with a 'path' column")
            for row in reader:
                yield reader.line_num, row
        else:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    yield n, {"path": line}


def _scan_manifest(path: Path) -> list[AudioItem]:
    """Rows of a manifest as items; a row whose id cannot be stored (absolute, '..', control characters...)
    becomes an item with a `problem` naming the manifest line, rejected by `tokenize` with that reason."""
    base = path.parent
    items = []
    for n, row in _numbered_rows(path):
        rel = row.pop("path")
        if not isinstance(rel, str) or not rel:
            raise AudioError(f"{path}:{n}: 'path' must be a non-empty string")
        full = rel if os.path.isabs(rel) else os.path.normpath(os.path.join(base, rel))
        given = row.pop("id", None)
        uid = str(given) if given not in (None, "") else _derived_id(os.path.relpath(full, base))
        items.append(AudioItem(uid, full, dict(row), problem=_id_reason(f"{path}:{n}", uid)))
    return items


def _community_rows(p: Path) -> list[dict[str, Any]] | None:
    """Rows of a Kaldi data dir or wav.scp, a fairseq/HuBERT .tsv or a lhotse manifest; None for anything else."""
    return read_rows(p)


def _sniff_audio(p: Path) -> bool:
    """Whether libsndfile recognises a file whose name has no audio extension."""
    import soundfile as sf

    try:
        sf.info(str(p))
    except Exception:  # soundfile raises RuntimeError / LibsndfileError / TypeError for what it cannot read
        return False
    return True


def scan_sources(srcs: Iterable[str | os.PathLike[str]]) -> list[AudioItem]:
    """Expand files, folders and manifests into utterances, in a stable order; duplicate ids are an error.
    Items whose id cannot be stored keep a `problem` (the reason `tokenize` rejects them with)."""
    items: list[AudioItem] = []
    for src in srcs:
        p = Path(src)
        if not p.exists():  # before anything is written: a missing input is a mistake, not a reject
            raise AudioError(f"{p}: no such file, folder or manifest")
        community = _community_rows(p)
        if community is not None:
            for row in community:
                where, uid, path = row.pop("where"), str(row.pop("id")), os.path.abspath(row.pop("path"))
                items.append(AudioItem(uid, path, row, problem=_id_reason(where, uid)))
        elif p.is_dir():
            items.extend(_scan_folder(p))
        elif p.suffix.lower() in MANIFEST_EXTENSIONS:
            items.extend(_scan_manifest(p))
        elif p.suffix.lower() in AUDIO_EXTENSIONS or _sniff_audio(p):
            # A single file (kept even if broken, so that it is rejected with its reason).
            uid = _id_from(p.name)
            items.append(AudioItem(uid, str(p), problem=_id_reason(str(p), uid)))
        else:
            raise AudioError(
                f"{p}: neither audio nor a manifest format tokenize reads (.txt/.lst, .tsv, .jsonl, a Kaldi data dir "
                "or wav.scp, a fairseq .tsv, a lhotse .jsonl[.gz])"
            )
    seen: dict[str, str] = {}
    unique: dict[str, AudioItem] = {}
    for it in items:
        if it.problem is not None:
            unique.setdefault(f"\0{it.path}\0{it.id}", it)  # never stored: only its rejection is recorded
            continue
        if it.id in seen and seen[it.id] != it.path:
            raise AudioError(f"duplicate utterance id {it.id!r}: {seen[it.id]} and {it.path}")
        seen[it.id] = it.path
        unique.setdefault(it.id, it)  # exact repeats (same id and path, e.g. a file named twice) are kept once
    return list(unique.values())
