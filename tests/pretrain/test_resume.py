"""Resuming a run: one pretrain per run folder, which settings a resumed run may change, label sets checked by
fingerprint, store paths compared resolved, and a pretrain SIGKILLed at random points resuming with the same
losses as an uninterrupted run."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import numpy as np
import pytest

from codec2vec.cli import main
from codec2vec.common.errors import ConfigError
from codec2vec.store import TokenStore
from conftest import KILLS, TINY_CONFIG, cli_ok, kill_at, make_store


def test_a_second_pretrain_on_a_locked_run_dir_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a") as held:  # the first pretrain, still running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["pretrain", "configs/lyra_tiny.yaml", f"data.store={tmp_path / 'none'}", f"run.dir={run}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "in use by another pretrain" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    saved = config_to_dict(load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    for ok in ("train.steps=999", "targets.weights.reconstruction=0.5", "train.threads=1"):
        check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", ok]))
    with pytest.raises(ConfigError, match=r"train\.lr .*-> 0\.1"):
        check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", "train.lr=0.1"]))


def test_resume_accepts_a_field_added_later_only_at_its_default(tmp_path: Path) -> None:
    """A checkpoint made before `targets.unmasked_weight` existed resumes when the field keeps its default."""
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    saved = config_to_dict(load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    del saved["targets"]["unmasked_weight"]
    check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"targets\.unmasked_weight \(None -> 0\.5\)"):
        check_resumable(
            saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", "targets.unmasked_weight=0.5"])
        )


def test_resume_refuses_a_label_set_refitted_under_the_same_name(tmp_path: Path) -> None:
    from codec2vec.pretrain.config import check_label_fingerprints

    s = make_store(tmp_path / "s", {"a": 5, "b": 6})
    first = s.write_labels("km", {"a": np.zeros(5, np.int64), "b": np.ones(6, np.int64)}, 4)
    assert TokenStore.open(s.root).labels("km").fingerprint == first
    check_label_fingerprints({"km": first}, TokenStore.open(s.root), ["km"])  # unchanged: fine
    second = s.write_labels("km", {"a": np.full(5, 2, np.int64), "b": np.ones(6, np.int64)}, 4)  # re-fit
    assert second != first and TokenStore.open(s.root).verify() == []
    with pytest.raises(ConfigError, match="label set 'km'.*changed"):
        check_label_fingerprints({"km": first}, TokenStore.open(s.root), ["km"])


def test_resume_compares_store_paths_resolved(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.common.errors import ConfigError
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    (tmp_path / "store").mkdir()
    (tmp_path / "other").mkdir()
    config = TINY_CONFIG
    saved = config_to_dict(load_config(config, [f"data.store={tmp_path / 'store'}"]))
    monkeypatch.chdir(tmp_path)
    for same in ("store", "./store/", "../" + tmp_path.name + "/store"):
        check_resumable(saved, load_config(config, [f"data.store={same}"]))
    with pytest.raises(ConfigError, match="data.store"):
        check_resumable(saved, load_config(config, ["data.store=other"]))


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


@pytest.mark.slow
def test_pretrain_killed_at_random_points_resumes_with_the_same_losses(
    ninety_clips_store: TokenStore, tmp_path: Path
) -> None:
    """`pretrain` SIGKILLed at seeded random points: every checkpoint left verifies, no step is logged twice, and
    the same command then finishes with the losses of an uninterrupted run."""
    reference = ninety_clips_store
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
        kill_at(
            [*args, f"run.dir={run}"],
            lambda t=target: any(r["step"] >= t for r in _metrics(run, strict=False)),
            extra=rng.uniform(0, 0.1),
        )
        latest = ckpt.latest_checkpoint(run) if run.exists() else None
        if latest is not None:
            ckpt.load_checkpoint(latest)  # verifies its checksums
        steps = [r["step"] for r in _metrics(run)]
        assert steps == sorted(set(steps))  # no step logged twice
        reached.append(steps[-1] if steps else 0)
    print(f"pretrain: last logged step after each kill: {reached}")
    assert sum(0 < n < 40 for n in reached) >= 3, reached  # (a kill near the end may find it done)
    cli_ok([*args, f"run.dir={run}"])
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == list(range(1, 41))
    for got, want in zip(rows, ref):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6), (got, want)
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
