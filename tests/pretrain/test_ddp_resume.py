"""Resuming under torchrun (2 CPU processes, gloo): rank 0 chooses the checkpoint and every rank loads it, or all
stop with one line; ranks never train on from different checkpoints. Rank 1's view of the run directory is bent
by a launcher: a stale listing (it sees only an older checkpoint) or a directory of its own (not shared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codec2vec.pretrain.config import save_config
from conftest import read_metrics, structured_store, tiny_config

EXTRA = (
    "targets=reconstruction,online",
    "model.dropout=0",
    "model.attention_dropout=0",
    "model.input_dropout=0",
    "model.layer_drop=0",
    "data.row_multiple=2",  # one plan for 1 and 2 processes
    "train.ckpt_every=4",
    "train.eval_every=0",
)

LAUNCHER = """
import os, sys
from codec2vec.pretrain import checkpoint
from codec2vec.cli import main

mode, config, elsewhere = sys.argv[1:4]
args = ["pretrain", config]
if os.environ.get("RANK") == "1":
    if mode == "stale":  # rank 1's listing of the shared directory is out of date: only the oldest checkpoint
        checkpoint.latest_checkpoint = lambda run_dir: checkpoint.list_checkpoints(run_dir)[0]
    else:  # rank 1's run.dir is another disk's, without the checkpoints
        args.append(f"run.dir={elsewhere}")
sys.exit(main(args))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store, run directory with checkpoints at steps 4 and 8), made by one process."""
    from codec2vec.pretrain.loop import pretrain

    root = tmp_path_factory.mktemp("ddp_resume")
    structured_store(root / "store", n=24)
    pretrain(tiny_config(root / "store", root / "run", "train.steps=8", "train.keep_checkpoints=0", *EXTRA))
    return root / "store", root / "run"


def _torchrun(tmp_path: Path, store: Path, run: Path, mode: str) -> subprocess.CompletedProcess[str]:
    save_config(tiny_config(store, run, "train.steps=10", *EXTRA), tmp_path / "cfg.yaml")
    (tmp_path / "launch.py").write_text(textwrap.dedent(LAUNCHER))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(tmp_path / "launch.py"), mode, str(tmp_path / "cfg.yaml"), str(tmp_path / "rank1-run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_stale_listing_on_rank_1_still_resumes_rank_0s_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    store, made = trained
    run, ref = tmp_path / "run", tmp_path / "ref"
    shutil.copytree(made, run)
    shutil.copytree(made, ref)
    out = _torchrun(tmp_path, store, run, "stale")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming step-00000008" in out.stderr
    pretrain(tiny_config(store, ref, "train.steps=10", *EXTRA))  # one process resumes the same checkpoint
    rows, ref_rows = read_metrics(run)[0], read_metrics(ref)[0]
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] == list(range(1, 11))
    for a, b in zip(rows[8:], ref_rows[8:]):  # both ranks went on from step 8 (rank 1 from 4 would diverge or hang)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), (a, b)


@pytest.mark.slow
def test_a_checkpoint_missing_on_rank_1_stops_every_rank_with_one_line(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, made = trained
    run = tmp_path / "run"
    shutil.copytree(made, run)
    before = (run / "metrics.jsonl").read_text()
    out = _torchrun(tmp_path, store, run, "private")
    assert out.returncode != 0
    lines = [x for x in out.stderr.splitlines() if "cannot resume step-00000008" in x]
    assert lines and all("rank 1:" in x and "run.dir must be one directory that every node shares" in x for x in lines)
    assert len(lines) <= 2  # each rank says it (torchrun may stop the other first); neither trained on
    assert (run / "metrics.jsonl").read_text() == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
