"""What `verify` sees in a store: lost shards, an edited `meta.json`, foreign files; and format-1 stores, read as
they are and upgraded on their first write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codec2vec.cli import main
from codec2vec.common.errors import StoreError
from codec2vec.store import TokenStore
from conftest import make_store


def _two_shards(root: Path) -> TokenStore:
    store = make_store(root, {"a": 5, "b": 6})
    with store.writer() as w:
        w.add("c", np.ones((4, 7), dtype=np.int64), seconds=0.14)
    return store


def test_verify_sees_lost_shards_edited_meta_and_foreign_files(tmp_path: Path) -> None:
    s = _two_shards(tmp_path / "s")
    assert s.verify() == []
    (s.root / "shards" / "000001.c2s").unlink()
    assert any("000001.c2s: missing" in p for p in TokenStore.open(s.root, check=False).verify())
    with pytest.raises(StoreError, match="missing"):
        TokenStore.open(s.root)

    s = _two_shards(tmp_path / "t")
    shutil.rmtree(s.root / "shards")
    assert any("shards: folder missing" in p for p in TokenStore.open(s.root, check=False).verify())

    for key, value in (("name", "dac"), ("sample_rate", 24000), ("frame_rate", 75.0)):
        s = _two_shards(tmp_path / f"m_{key}")
        meta = json.loads((s.root / "meta.json").read_text())
        meta["codec"][key] = value
        (s.root / "meta.json").write_text(json.dumps(meta, indent=2))
        assert any("meta.json: edited" in p for p in TokenStore.open(s.root, check=False).verify()), key
        with pytest.raises(StoreError, match="edited"):
            TokenStore.open(s.root)

    s = _two_shards(tmp_path / "f")
    (s.root / "labels").mkdir()
    shutil.copy(s.root / "shards" / "000000.c2s", s.root / "labels" / "km.c2l")
    (s.root / "shards" / "notes.txt").write_text("hello")
    problems = TokenStore.open(s.root, check=False).verify()
    assert any("km.c2l: foreign file" in p for p in problems) and any("notes.txt: foreign" in p for p in problems)
    assert main(["verify", str(s.root), "--repair"]) == 0  # moved to STORE/foreign/, not deleted
    assert (s.root / "foreign" / "labels-km.c2l").is_file()


def test_format_1_stores_are_read_and_upgraded_on_first_write(tmp_path: Path) -> None:
    s = _two_shards(tmp_path / "old")
    (s.root / "contents.json").unlink()
    meta = json.loads((s.root / "meta.json").read_text())
    (s.root / "meta.json").write_text(json.dumps({**meta, "format_version": 1}, indent=2))
    old = TokenStore.open(s.root)
    assert sorted(old.ids()) == ["a", "b", "c"] and old.verify() == []
    with old.writer() as w:
        w.add("d", np.zeros((4, 3), dtype=np.int64), seconds=0.06)
    assert json.loads((s.root / "meta.json").read_text())["format_version"] == 2
    assert (s.root / "contents.json").is_file() and TokenStore.open(s.root).verify() == []
