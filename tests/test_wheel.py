"""The built wheel alone carries the package and its data: built from a copy of the sources, installed into a fresh
virtual environment that sees the dependencies but not the source tree, it answers `codec2vec --version` and runs
`codec2vec demo --small` to its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(tmp: Path) -> Path:
    """`pip wheel` of a copy of the sources (the checkout gets no build/ or egg-info); no network, no isolation."""
    src = tmp / "src-copy"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(src)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (wheel,) = (tmp / "dist").glob("codec2vec-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed; the test environment's site-packages (torch, numpy...) are added by a
    .pth line, which adds the folder but runs none of its own .pth files, so an editable install stays out."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site / "zz_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_the_small_demo(tmp_path: Path, lyra_dir: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = __import__("zipfile").ZipFile(wheel).namelist()
    assert "codec2vec/pretrain/configs/demo.yaml" in names and "codec2vec/py.typed" in names
    venv = _fresh_venv(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(CODEC2VEC_LYRA_DIR=str(lyra_dir), CODEC2VEC_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path))
    run = tmp_path / "work"
    run.mkdir()  # not the checkout: nothing of the source tree is on the path

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import codec2vec, importlib.metadata as m; "
         "print(codec2vec.__file__); print(m.distribution('codec2vec').locate_file(''))"],
        cwd=run, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), where

    version = subprocess.run(
        [str(venv / "bin" / "codec2vec"), "--version"], cwd=run, env=env, capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == "codec2vec 0.1.0", version.stderr

    demo = subprocess.run(
        [str(venv / "bin" / "codec2vec"), "demo", "--small", "--out", str(run / "demo"), "--json"],
        cwd=run, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    results = json.loads((run / "demo" / "results.json").read_text())
    assert {p["task"] for p in results["probes"]} >= {"pr", "ks", "sid"}
    assert (run / "demo" / "report.html").is_file()
