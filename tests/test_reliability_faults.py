"""Fault injection. `tokenize`, `merge` and `pretrain` are SIGKILLed at many seeded
random instants; after every kill the store (or run) must be sound, hold nothing twice and lose nothing
committed, and at the end the same command must finish the job with the result of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from codec2vec.store import TokenStore

CLI = [sys.executable, "-m", "codec2vec"]
KILLS = 5
pytestmark = pytest.mark.slow


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - start


def _kill_when(args: list[str], ready: Callable[[], bool], extra: float) -> int:
    """Start the command; once `ready()` (a random point of progress: a count of shards, a logged step) plus
    `extra` random seconds, SIGKILL it, unless it finished first. Returns its exit status."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and not ready() and time.time() < deadline:
        time.sleep(0.005)
    try:
        proc.wait(timeout=extra)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def _same_codes(store: TokenStore, ref: TokenStore) -> None:
    for uid in store.ids():
        assert np.array_equal(store[uid].numpy(), ref[uid].numpy()), uid


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, short_clips: Path) -> Path:
    root = tmp_path_factory.mktemp("faults") / "corpus"
    root.mkdir()
    clips = sorted(short_clips.glob("*.wav"))
    for i in range(90):
        shutil.copy(clips[i % len(clips)], root / f"f{i:03d}.wav")
    return root


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> TokenStore:
    """The corpus tokenized in one go (in this process), with the options the killed runs use."""
    from codec2vec.tokenize import TokenizeOptions, tokenize

    out = tmp_path_factory.mktemp("faults_ref") / "store"
    tokenize([str(corpus)], out, TokenizeOptions(codec="lyra", batch_size=2, shard_seconds=2), progress=False)
    return TokenStore.open(out)


def test_tokenize_killed_at_random_points(corpus: Path, reference: TokenStore, tmp_path: Path) -> None:
    args = ["tokenize", str(corpus), "--batch-size", "2", "--shard-seconds", "2"]
    ref = reference
    rng = np.random.default_rng(8)
    out = tmp_path / "killed"
    partial = []
    for _ in range(KILLS):
        target = len(list(out.glob("shards/*.c2s"))) + int(rng.integers(1, 4))
        _kill_when(
            [*args, "--out", str(out)], lambda t=target: len(list(out.glob("shards/*.c2s"))) >= t, rng.uniform(0, 0.05)
        )
        if (out / "meta.json").exists():
            store = TokenStore.open(out)  # refuses an id stored twice or a recorded shard missing
            assert store.verify() == [] and set(store.ids()) <= set(ref.ids())
            _same_codes(store, ref)
            partial.append(len(store))
    print(f"tokenize: utterances stored after each kill: {partial}")
    # Kills land at progress points (plus a short random delay): on a fast, quiet machine the last one may find
    # the job done, so most, not all, must land mid-job; what was stored never shrinks.
    assert sum(0 < n < len(ref) for n in partial) >= KILLS - 2 and partial == sorted(partial), partial
    _timed([*args, "--out", str(out)])
    final = TokenStore.open(out)
    assert sorted(final.ids()) == sorted(ref.ids()) and final.verify() == []
    _same_codes(final, ref)


def test_merge_killed_at_random_points(tmp_path: Path) -> None:
    from conftest import make_store

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

        code = _kill_when([*args, str(out)], ready, rng.uniform(0, 0.1))
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


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _metrics(run: Path, strict: bool = True) -> list[dict]:
    """Train rows of the run's metrics.jsonl (`strict=False`: while it is being written, a line may be torn)."""
    path = run / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            if strict:
                raise
    return [r for r in rows if r.get("split") != "dev"]


def test_pretrain_killed_at_random_points(reference: TokenStore, tmp_path: Path) -> None:
    from codec2vec.pretrain import checkpoint as ckpt
    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.loop import pretrain

    overrides = [
        f"data.store={reference.root}",
        "train.steps=40",
        "train.ckpt_every=4",
        "train.log_every=1",
        "train.eval_every=0",
        "train.warmup_steps=4",
        "data.crop_frames=100",
        "data.min_frames=10",
        "data.batch_frames=400",
        "run.tensorboard=false",
    ]
    args = ["pretrain", "configs/lyra_tiny.yaml", *overrides]
    pretrain(load_config("configs/lyra_tiny.yaml", [*overrides, f"run.dir={tmp_path / 'ref'}"]))
    ref = _metrics(tmp_path / "ref")
    rng = np.random.default_rng(10)
    run = tmp_path / "killed"
    reached = []
    for _ in range(KILLS - 1):  # each start costs seconds (torch, the model): one kill fewer than the others
        done = [r["step"] for r in _metrics(run)]
        target = min(39, (done[-1] if done else 0) + int(rng.integers(1, 6)))
        _kill_when(
            [*args, f"run.dir={run}"],
            lambda t=target: any(r["step"] >= t for r in _metrics(run, strict=False)),
            rng.uniform(0, 0.1),
        )
        latest = ckpt.latest_checkpoint(run) if run.exists() else None
        if latest is not None:
            ckpt.load_checkpoint(latest)  # verifies its checksums
        steps = [r["step"] for r in _metrics(run)]
        assert steps == sorted(set(steps))  # no step logged twice
        reached.append(steps[-1] if steps else 0)
    print(f"pretrain: last logged step after each kill: {reached}")
    assert sum(0 < n < 40 for n in reached) >= 3, reached  # (a kill near the end may find it done)
    _timed([*args, f"run.dir={run}"])
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == list(range(1, 41))
    for got, want in zip(rows, ref):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6), (got, want)
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
