"""A store's life on disk: a failed or killed `merge` leaves no half-made store (its hidden build folder is
removed by the next start), and a store's files follow the umask."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from codec2vec.cli import main
from codec2vec.store import TokenStore
from conftest import CLI, KILLS, kill_at, make_store


def test_a_failed_or_killed_merge_leaves_no_hidden_folder(tmp_path: Path, monkeypatch) -> None:
    a = make_store(tmp_path / "a", {"x": 4})
    b = make_store(tmp_path / "b", {"y": 4})
    real = os.replace

    def full(src, dst, *args, **kw):  # the disk fills up while the merged shards are written
        if str(dst).endswith(".c2s"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", full)
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m")]) == 2
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    stale = tmp_path / ".m.tmp-killed"  # what a SIGKILLed merge leaves: removed by the next start
    stale.mkdir()
    (stale / "junk").write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 60, time.time() - 60))
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "m"]
    assert sorted(TokenStore.open(tmp_path / "m").ids()) == ["x", "y"]


def test_store_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = make_store(tmp_path / "s", {"a": 3})
    finally:
        os.umask(old)
    assert (s.root.stat().st_mode & 0o777) == 0o755
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in s.root.rglob("*") if p.is_file())


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_merge_killed_at_random_points_is_all_or_nothing(tmp_path: Path) -> None:
    """`merge` SIGKILLed at seeded random points leaves no store or a complete one; the same command then finishes
    (or refuses to redo it) and no hidden folder is left."""
    a = make_store(tmp_path / "a", {f"a{i}": 40 + i for i in range(300)}, seed=1)
    b = make_store(tmp_path / "b", {f"b{i}": 40 + i for i in range(300)}, seed=2)
    for s, tag in ((a, "a"), (b, "b")):
        for j in range(30):  # many shards: the merge copies them one by one
            with s.writer() as w:
                w.add(f"{tag}x{j}", np.zeros((4, 50), dtype=np.int64), seconds=1.0)
    args = ["merge", str(a.root), str(b.root), "--out"]
    rng = np.random.default_rng(9)
    out = tmp_path / "m"
    code = None
    for i in range(KILLS):
        target, old = int(rng.integers(1, 60)), set(_hidden(tmp_path))  # shards copied by this run's build

        def ready(t: int = target, old: set[str] = old) -> bool:
            return sum(len(list(p.glob("shards/*.c2s"))) for p in tmp_path.glob(".m.tmp-*") if p.name not in old) >= t

        code = kill_at([*args, str(out)], ready, extra=rng.uniform(0, 0.1)).code
        print(f"merge: kill {i} after {target} shards: exit {code}, hidden folders {_hidden(tmp_path)}")
        if out.exists():  # all or nothing: a merged store is complete
            # (finished, or killed after its rename: either way complete; 2 would be a refusal to overwrite)
            assert sorted(TokenStore.open(out).ids()) == sorted(a.ids() + b.ids())
            break
    time.sleep(1.1)  # a killed build's folder is removed by the next start once it is a second old
    existed = out.exists()
    proc = subprocess.run([*CLI, *args, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == (2 if existed else 0), proc.stderr  # the same command finishes (or refuses to redo)
    merged = TokenStore.open(out)
    assert sorted(merged.ids()) == sorted(a.ids() + b.ids()) and merged.verify() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "m"]  # no hidden folder left
