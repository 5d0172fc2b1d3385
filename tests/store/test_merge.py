"""`merge` of private and scrambled stores: keys must agree, and the flags (with the keys' fingerprints) carry
over."""

from __future__ import annotations

from pathlib import Path

from codec2vec.cli import main
from codec2vec.privacy.keys import load_key
from codec2vec.store import TokenStore
from conftest import make_store, one_line_error


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
        one_line_error(capsys, "scrambl", "cannot merge")
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
        one_line_error(capsys, "private", "cannot merge")
    assert main(["merge", str(stores["p1"]), str(stores["p2"]), "--out", str(tmp_path / "m")]) == 0
    merged = TokenStore.open(tmp_path / "m")
    assert (
        merged.info()["private"]
        and merged.meta["private"]["key_check"] == TokenStore.open(stores["p1"]).meta["private"]["key_check"]
    )
