"""The second reliability pass: one regression test per defect outside the store internals (merge, demo, private
stores, extract, checkpoints, anonymize, probe, kmeans, audio). Each fails on the code before its fix."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from codec2vec.cli import main
from codec2vec.privacy.keys import load_key
from codec2vec.store import TokenStore
from conftest import make_store


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "unexpected" not in err, err
    for w in words:
        assert w in err, err
    return err


# merge: privacy and scrambling must agree, and are carried ---------------------------------------------------


def _scrambled(tmp_path: Path, name: str, key_name: str, seed: int) -> Path:
    from codec2vec.privacy.anonymize import anonymize_store

    clear = make_store(tmp_path / f"{name}-clear", {f"{name}{i}": 20 + i for i in range(3)}, seed=seed)
    key = load_key(tmp_path / key_name, create=True)
    anonymize_store(clear.root, tmp_path / name, key=key)
    return tmp_path / name


def test_merge_refuses_mixed_scrambling_and_carries_the_flags(tmp_path: Path, capsys) -> None:
    a = _scrambled(tmp_path, "a", "k1", 0)
    b = _scrambled(tmp_path, "b", "k1", 1)
    c = _scrambled(tmp_path, "c", "k2", 2)
    clear = make_store(tmp_path / "clear", {"x0": 20}, seed=3).root
    for other in (c, clear):  # another key, or clear codes: refused, nothing written
        assert main(["merge", str(a), str(other), "--out", str(tmp_path / "bad")]) == 2
        _one_line_error(capsys, "scrambl", "cannot merge")
        assert not (tmp_path / "bad").exists()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    merged = TokenStore.open(tmp_path / "ab")
    assert merged.meta["scrambled"] == TokenStore.open(a).meta["scrambled"]
    assert merged.info()["scrambled"] and len(merged) == 6
    assert not merged.verify()


def test_merge_refuses_private_with_clear_or_another_key_and_keeps_private(tmp_path: Path, capsys) -> None:
    from codec2vec.privacy.private import _mark_private

    stores = {}
    for name, key in (("p1", "k1"), ("p2", "k1"), ("p3", "k2")):
        s = make_store(tmp_path / name, {f"{name}u": 30}, seed=len(stores))
        stores[name] = _mark_private(s, load_key(tmp_path / key, create=True), ("split",)).root
    clear = make_store(tmp_path / "clear", {"x": 30}).root
    for other in (stores["p3"], clear):
        assert main(["merge", str(stores["p1"]), str(other), "--out", str(tmp_path / "bad")]) == 2
        _one_line_error(capsys, "private", "cannot merge")
    assert main(["merge", str(stores["p1"]), str(stores["p2"]), "--out", str(tmp_path / "m")]) == 0
    merged = TokenStore.open(tmp_path / "m")
    assert merged.info()["private"] and merged.meta["private"]["key_check"] == TokenStore.open(stores["p1"]).meta[
        "private"
    ]["key_check"]


# demo: never writes into a folder that is not its own ----------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_refuses_a_users_folder_before_writing_anything(tmp_path: Path, capsys) -> None:
    user = tmp_path / "mine"
    (user / "tasks" / "pr").mkdir(parents=True)
    (user / "tasks" / "pr" / "train.jsonl").write_text('{"id": "precious"}\n')
    (user / "corpus").mkdir()
    (user / "corpus" / "thesis.wav").write_bytes(b"RIFF....")
    (user / "results.json").write_text("{}")
    before = _tree(user)
    assert main(["demo", "--out", str(user), "--small"]) == 2
    _one_line_error(capsys, str(user), "not a codec2vec demo folder")
    assert _tree(user) == before
    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "afile"), "--small"]) == 2
    _one_line_error(capsys, "not a folder")
    from codec2vec.demo.stages import MARKER, claim_folder

    fresh = tmp_path / "fresh"  # absent (or empty): claimed with the marker, then resumable
    claim_folder(fresh)
    assert (fresh / MARKER).is_file()
    (fresh / "stages").mkdir()
    (fresh / "stages" / "synth.json").write_text("{}")
    claim_folder(fresh)  # its own folder: resumed
    old = tmp_path / "old_demo"  # a demo folder of a version before the marker
    (old / "stages").mkdir(parents=True)
    (old / "corpus").mkdir()
    (old / "stages" / "synth.json").write_text("{}")
    claim_folder(old)
    assert (old / MARKER).is_file()
