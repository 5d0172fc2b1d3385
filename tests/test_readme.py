"""The README's commands are the ones that work: its set-up block is checked and its main job is run."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set up, run, test\n\n```bash\n(.*?)```", text, re.S)
    assert block, "README lost its set-up block"
    return [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]


def test_readme_commands_are_ci_and_quickstart() -> None:
    install, main_job, tests = _setup_block()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.replace("pip install", "python3 -m pip install -q") in ci  # CI installs as the README says
    assert tests.replace("python -m pytest -q", "python3 -m pytest -q") in ci  # and tests as it says
    assert main_job.startswith("bash examples/quickstart.sh")


def test_quickstart_runs(tmp_path: Path) -> None:
    _, main_job, _ = _setup_block()
    script, _ = main_job.split()[1:3]
    env = dict(os.environ, QUICKSTART_HOURS="0.03", QUICKSTART_STEPS="20")
    out = tmp_path / "qs"
    proc = subprocess.run(
        ["bash", str(ROOT / script), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") != "dev"]
    assert train[-1]["step"] == 20 and all(f"acc_{t}" in train[-1] for t in ("reconstruction", "clusters", "online"))
    assert (out / "store" / "labels" / "km.c2l").is_file()
