"""benchmarks/gpu_check.py (run on a GPU by hand) stays runnable: a tiny CPU run trains, stops, resumes and prints
its JSON rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny", "--steps", "2",
           "--log-every", "1", "--utterances", "10", "--configs", "lyra_base", "--out", str(tmp_path),
           "--set", "train.accum_steps=1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    start, resume, summary = rows[-3:]
    assert (start["phase"], resume["phase"]) == ("start", "resume") and resume["ok"] and resume["resumed_at"] == 1
    assert resume["step"] == 2 and start["frames_per_s"] > 0 and 0 <= resume["data_wait_share"] <= 1
    assert summary["failed"] == 0 and summary["base_frames_per_s"]["lyra_base"] > 0
    assert "syncs_per_step" in resume and "peak_gpu_mem_gib" in resume


def test_gpu_check_says_in_one_line_when_there_is_no_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no CUDA device" in json.loads(out.stdout.strip())["error"]
