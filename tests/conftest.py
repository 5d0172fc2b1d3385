"""Shared test fixtures: where the shared assets are (Lyra weights, real speech), and small corpora.

`../shared` beside the checkout holds the Lyra v2 weights and real speech (CI lays a copy there too);
`CODEC2VEC_SHARED` overrides the location. `CODEC2VEC_LYRA_DIR` is set for the tests and the
subprocesses they start, so no test ever tries to download weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("CODEC2VEC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
LYRA_DIR = SHARED / "codecs" / "lyra-v2"
SPEECH = SHARED / "speech"
os.environ.setdefault("CODEC2VEC_LYRA_DIR", str(LYRA_DIR))
# One intra-op thread, in this process and the CLI processes tests start: tiny models run 10x slower with
# two threads on a busy 2-core machine, and results do not depend on the thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def lyra_dir() -> Path:
    assert (LYRA_DIR / "quantizer.tflite").is_file(), f"Lyra weights not found in {LYRA_DIR}"
    return LYRA_DIR


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    assert (SPEECH / "lyra_sample1_16kHz.wav").is_file(), f"real speech not found in {SPEECH}"
    return SPEECH


@pytest.fixture(scope="session")
def lyra_codec(lyra_dir: Path):
    from codec2vec import get_codec

    return get_codec("lyra", path=str(lyra_dir))


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory: pytest.TempPathFactory, speech_dir: Path) -> Path:
    """A folder of 24 real-speech files in several formats, rates and channel counts (crops of the
    shared recordings), in nested subfolders."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    sources = [sf.read(speech_dir / n, dtype="float32") for n in ("lyra_sample1_16kHz.wav", "lyra_sample2_16kHz.wav")]
    for i in range(24):
        wav, sr = sources[i % 2]
        start = int(rng.integers(0, sr // 2))
        length = int(rng.integers(sr // 2, len(wav) - start))
        clip = wav[start : start + length] * float(rng.uniform(0.5, 1.0))
        sub = root / f"spk{i % 3}"
        sub.mkdir(exist_ok=True)
        if i % 4 == 1:
            sf.write(sub / f"utt{i:02d}.flac", clip, sr)
        elif i % 4 == 2:  # stereo at 48 kHz
            from codec2vec.audio import resample

            up = resample(clip, sr, 48000)
            sf.write(sub / f"utt{i:02d}.wav", np.stack([up, 0.5 * up], axis=1), 48000)
        elif i % 4 == 3:
            sf.write(sub / f"utt{i:02d}.ogg", clip, sr)
        else:
            sf.write(sub / f"utt{i:02d}.wav", clip, sr)
    return root


@pytest.fixture()
def bad_corpus(tmp_path: Path, speech_dir: Path) -> Path:
    """Good files mixed with a truncated file, an empty file, a text file named .wav and a NaN file."""
    import soundfile as sf

    root = tmp_path / "mixed"
    root.mkdir()
    for name in ("lyra_sample1_16kHz.wav", "lyra_sample2_16kHz.wav", "lyra_sample1_8kHz.wav"):
        shutil.copy(speech_dir / name, root / name)
    blob = (speech_dir / "lyra_sample2_16kHz.wav").read_bytes()
    (root / "truncated.wav").write_bytes(blob[: len(blob) // 2])
    (root / "empty.wav").write_bytes(b"")
    (root / "notes.wav").write_text("these are meeting notes, not audio\n")
    sf.write(root / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, lyra_dir: Path) -> dict[str, Path]:
    """A tiny synthetic corpus (4 voices, ~3 minutes), its Lyra token store, and a run directory with a tiny
    model pre-trained for 20 steps on it (`configs/lyra_tiny.yaml`): {"corpus", "store", "run"}."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tiny_run")
    config = Path(__file__).resolve().parents[1] / "configs" / "lyra_tiny.yaml"
    steps = [
        ["synth", str(root / "corpus"), "--hours", "0.05", "--speakers", "4", "--seed", "1", "--json"],
        ["tokenize", str(root / "corpus" / "all.jsonl"), "--out", str(root / "store"), "--json"],
        ["pretrain", str(config), f"data.store={root / 'store'}", f"run.dir={root / 'run'}", "train.steps=20",
         "run.progress=off"],
    ]  # fmt: skip
    for args in steps:
        out = subprocess.run([sys.executable, "-m", "codec2vec", *args], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"codec2vec {args[0]} failed: {out.stderr[-2000:]}"
    return {"corpus": root / "corpus", "store": root / "store", "run": root / "run"}
