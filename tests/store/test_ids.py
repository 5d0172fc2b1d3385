"""Utterance ids: unsafe ids are rejected naming the manifest line, decode never writes outside `--out`, and
file names that are not UTF-8 are kept byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.cli import main
from codec2vec.common.errors import StoreError
from codec2vec.store import TokenStore
from codec2vec.tokenize import tokenize
from conftest import lyra_options


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (links not followed)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_unsafe_ids_are_rejected_and_decode_stays_inside_out(tmp_path: Path, short_clips: Path, capsys) -> None:
    audio = tmp_path / "audio"
    shutil.copytree(short_clips, audio)
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = [
        {"path": "../audio/c0.wav"},  # derived id: 'audio/c0' (leading '..' dropped), safe
        {"path": "../audio/c1.wav", "id": "../audio/c1"},
        {"path": "../audio/c2.wav", "id": str(audio / "c2")},
        {"path": "../audio/c3.wav", "id": ".."},
        {"path": "../audio/c4.wav", "id": "a/\x01b"},
        {"path": "../audio/c5.wav", "id": "ok/c5"},
    ]
    manifest = lists / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = _tree(audio)
    store = tmp_path / "store"
    summary = tokenize([str(manifest)], store, lyra_options(), progress=False)
    assert summary["stored"] == 2 and summary["rejected"] == 4
    rejects = [json.loads(line) for line in (store / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"].split(": ")[0] for r in rejects) == [f"{manifest}:{n}" for n in (2, 3, 4, 5)]
    assert sorted(TokenStore.open(store).ids()) == ["audio/c0", "ok/c5"]
    assert main(["decode", str(store), "--out", str(tmp_path / "decoded")]) == 0
    assert _tree(audio) == before, "decode wrote into the source folder"
    assert sorted(_tree(tmp_path / "decoded")) == ["audio/c0.wav", "ok/c5.wav"]
    # The writer is the last line of defence, and decode proves every path before writing any.
    with pytest.raises(StoreError, match="absolute"), TokenStore.open(store).writer() as w:
        w.add("/etc/x", np.zeros((46, 3), dtype=np.int64), seconds=0.06)
    from codec2vec.store.decode import output_path

    with pytest.raises(StoreError, match="'..'"):
        output_path(tmp_path / "decoded", "../audio/c0", "wav")


def test_non_utf8_file_names_are_stored_and_decoded(tmp_path: Path, short_clips: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 bytes: not UTF-8
    shutil.copy(short_clips / "c0.wav", src / name)
    summary = tokenize([str(src)], tmp_path / "s", lyra_options(), progress=False)
    assert summary["stored"] == 1 and TokenStore.open(tmp_path / "s").ids() == [name[:-4]]
    assert main(["decode", str(tmp_path / "s"), "--out", str(tmp_path / "out")]) == 0
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"caf\xe9.wav"]
    assert sf.info(os.fsencode(tmp_path / "out" / name)).samplerate == 16000
