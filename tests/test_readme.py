"""The README's commands are the ones that work: it opens with the two `run` commands, CI runs the second, the
`run` script sets up once and reuses its environment, and the quickstart (the hand-run example) runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _code_blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.strip().splitlines() if line.split("#")[0].strip()]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    first = _commands(_code_blocks()[0])
    assert first == ["./run demo", "./run test"]
    text = (ROOT / "README.md").read_text()
    assert text.index("```") < text.index("\n## ")  # the very first block, before any section
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    assert "exec ./run test" in ci  # CI runs the README's test command, nothing else
    assert "apt-get install" in " ".join(ci) and "chromium" in " ".join(ci)
    assert os.access(ROOT / "run", os.X_OK)  # `./run` works from a clone (git keeps the mode)


def test_run_script_sets_up_once_and_reuses_the_environment(tmp_path: Path) -> None:
    """`run` against a fake interpreter: the first call makes the venv and installs (CPU torch when no
    nvidia-smi), a second call with the same pyproject.toml installs nothing, a changed one installs again."""
    log = tmp_path / "log"
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$0 $*" >> {log}\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi\n'
    )
    fake.chmod(0o755)
    root = tmp_path / "clone"
    root.mkdir()
    (root / "run").write_text((ROOT / "run").read_text())
    (root / "run").chmod(0o755)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "HOME": str(tmp_path)}

    def run(*args: str) -> list[str]:
        log.write_text("")
        subprocess.run([str(root / "run"), *args], cwd=root, env=env, check=True, capture_output=True, timeout=60)
        return log.read_text().splitlines()

    first = run("test", "-k", "nothing")
    assert any("-m venv" in line for line in first)
    assert any("pip install -q torch==2.13.0" in line for line in first)  # no nvidia-smi on PATH: CPU build
    assert any(line.endswith(f"pip install -q -e {root}[all,test]") for line in first)
    assert any(line.endswith("-m ruff check src tests benchmarks") for line in first)  # lint, then types
    assert any(line.endswith("-m mypy") for line in first)
    assert first[-1].endswith("-m pytest -q -p no:cacheprovider -m slow or not slow -k nothing")  # every test
    again = run("demo", "--small")
    assert again == [f"{root}/.venv/bin/python -m codec2vec demo --out runs/demo --small"]  # nothing reinstalled
    (root / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert any("pip install" in line for line in run("demo", "--out", "x"))


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path) -> None:
    main_job = next(c for b in _code_blocks() for c in _commands(b) if c.startswith("bash examples/quickstart.sh"))
    script = main_job.split()[1]
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
