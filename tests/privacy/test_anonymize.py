"""A killed `anonymize` leaves only a hidden build folder, which the next run removes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codec2vec.cli import main
from codec2vec.privacy.keys import load_key
from codec2vec.store import TokenStore
from conftest import kill_at, make_store


def test_a_killed_anonymize_leaves_nothing_the_next_run_does_not_remove(tmp_path: Path) -> None:
    src = make_store(tmp_path / "src", {f"u{i}": 2000 for i in range(40)}).root
    key = tmp_path / "k.key"
    load_key(key, create=True)
    out = tmp_path / "anon"
    argv = ["anonymize", str(src), "--out", str(out), "--scramble-key", str(key)]
    killed = kill_at(argv, lambda: any(p.name.startswith(".anon") for p in tmp_path.iterdir()), timeout=60)
    assert killed.reached or killed.code != -9, "no build folder within 60 s"
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".anon")]
    if killed.code != -9 or not left:
        pytest.skip("the run finished before it could be killed")
    time.sleep(1.1)  # older than the instant between making a build folder and locking it
    assert main(["anonymize", str(src), "--out", str(out), "--scramble-key", str(key)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".anon")]
    assert len(TokenStore.open(out)) == 40
