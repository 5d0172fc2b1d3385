"""Property-based tests over hostile inputs.

Hypothesis generates manifests with arbitrary ids and paths (absolute, '..', control characters, backslashes,
empty parts, missing files, non-audio files) and WAV files with arbitrary headers (any sample rate, channel
count, sample format, declared and present data size). For each, `tokenize` then `decode` run, and:
nothing is written outside the store and the decode folder, every input is either stored once or rejected
with a reason, and the store verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec2vec.common.errors import AudioError
from codec2vec.store import TokenStore
from codec2vec.store.decode import decode_store
from codec2vec.tokenize import TokenizeOptions, tokenize

OPTS = TokenizeOptions(codec="lyra", batch_size=4, shard_seconds=0.7)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _snapshot(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    """Every file and folder under `root` (outside `skip`) with the SHA-256 of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in skip:
            continue
        out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "dir"
    return out


def _check_outcome(inputs: list[tuple[str, str]], sandbox: Path, before: dict[str, str]) -> None:
    """`inputs`: (id, file) of every input. Store, rejects and decode agree with the contract."""
    from codec2vec.store.layout import id_problem

    store_path, decoded = sandbox / "store", sandbox / "decoded"
    assert _snapshot(sandbox, ("store", "decoded")) == before, "something was written outside the given folders"
    store = TokenStore.open(store_path)
    assert store.verify() == []
    rejects = {}
    if (store_path / "rejects.jsonl").exists():
        for line in (store_path / "rejects.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert r["reason"], r
            rejects[(r["path"], r["id"])] = r
    ids = store.ids()
    assert len(ids) == len(set(ids))
    for uid, path in set(inputs):
        stored = uid in ids and id_problem(uid) is None and store.entry(uid)["source"] == path
        rejected = (path, uid) in rejects
        assert stored != rejected, (uid, path, stored, rejected, rejects)
    assert len(ids) <= len(set(inputs))
    n = decode_store(store_path, decoded) if ids else 0
    assert n == len(ids)
    written = [p for p in decoded.rglob("*") if p.is_file()] if decoded.exists() else []
    assert len(written) == len(ids)
    assert all(p.resolve().is_relative_to(decoded.resolve()) for p in written)


def _expected(uid: str | None, path: str, base: Path) -> tuple[str, str]:
    """(id, file) as the manifest row defines them: the given id, else the path relative to the manifest's
    folder without its extension and leading '..' parts."""
    full = path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
    if uid not in (None, ""):
        return str(uid), full
    parts = os.path.splitext(os.path.relpath(full, base))[0].split("/")
    while parts and parts[0] == "..":
        parts.pop(0)
    return "/".join(parts), full


_ID_CHARS = st.sampled_from(["a", "b", "/", ".", "..", "\\", "\x00", "\x01", "\n", " ", "é", "\udcff", "-"])
_IDS = st.one_of(st.none(), st.just(""), st.lists(_ID_CHARS, max_size=8).map("".join), st.text(max_size=12))
_PATHS = st.one_of(
    st.sampled_from(["../audio/c0.wav", "../audio/c1.wav", "../audio/./c2.wav", "../audio/sub/../c3.wav"]),
    st.sampled_from(["../audio/notes.wav", "../audio/missing.wav", "/nonexistent/x.wav", "../lists/m.jsonl"]),
    st.sampled_from(["../audio/c4.wav", "ABS"]),
)


@SETTINGS
@given(rows=st.lists(st.tuples(_IDS, _PATHS), min_size=1, max_size=8))
def test_arbitrary_manifest_rows_are_stored_once_or_rejected(
    tmp_path_factory: pytest.TempPathFactory, short_clips: Path, rows
) -> None:
    sandbox = tmp_path_factory.mktemp("sandbox")
    shutil.copytree(short_clips, sandbox / "audio")
    (sandbox / "audio" / "sub").mkdir()
    (sandbox / "audio" / "notes.wav").write_text("not audio")
    (sandbox / "lists").mkdir()
    lines, expect = [], []
    for uid, path in rows:
        path = str(sandbox / "audio" / "c5.wav") if path == "ABS" else path
        row = {"path": path} if uid is None else {"path": path, "id": uid}
        lines.append(json.dumps(row))
        expect.append(_expected(uid, path, sandbox / "lists"))
    manifest = sandbox / "lists" / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    before = _snapshot(sandbox, ("store", "decoded"))
    try:
        tokenize([str(manifest)], sandbox / "store", OPTS, progress=False)
    except AudioError as e:  # two rows giving one id to different files: the whole manifest is refused
        assert "duplicate utterance id" in str(e)
        assert not (sandbox / "store").exists() or TokenStore.open(sandbox / "store").ids() == []
        return
    _check_outcome(expect, sandbox, before)


def _riff(rate: int, channels: int, bits: int, tag: int, declared: int, present: int) -> bytes:
    block = max(1, channels * max(1, bits // 8))
    fmt = struct.pack("<HHIIHH", tag, channels, rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    data = bytes((i * 37) & 0xFF for i in range(present))
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", declared) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


_HEADERS = st.tuples(
    st.one_of(st.sampled_from([0, 1, 3999, 4000, 8000, 16000, 44100, 384000, 384001]), st.integers(0, 2**32 - 1)),
    st.one_of(st.sampled_from([0, 1, 2, 64, 65]), st.integers(0, 300)),
    st.sampled_from([0, 8, 16, 24, 32, 64, 7]),
    st.sampled_from([1, 3, 0, 0xFFFE, 85]),
    st.one_of(st.just(-1), st.integers(0, 2**32 - 1)),  # -1: declare what is present
    st.integers(0, 6000),
)


@SETTINGS
@given(headers=st.lists(_HEADERS, min_size=1, max_size=5))
def test_arbitrary_wav_headers_are_stored_once_or_rejected(tmp_path_factory: pytest.TempPathFactory, headers) -> None:
    sandbox = tmp_path_factory.mktemp("headers")
    (sandbox / "in").mkdir()
    for i, (rate, channels, bits, tag, declared, present) in enumerate(headers):
        blob = _riff(rate, channels, bits, tag, present if declared < 0 else declared, present)
        (sandbox / "in" / f"h{i}.wav").write_bytes(blob)
    before = _snapshot(sandbox, ("store", "decoded"))
    tokenize([str(sandbox / "in")], sandbox / "store", OPTS, progress=False)
    _check_outcome([(f"h{i}", str(sandbox / "in" / f"h{i}.wav")) for i in range(len(headers))], sandbox, before)
