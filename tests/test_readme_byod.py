"""The README's "Bring your own data" commands, as written, take a Kaldi data dir and a lhotse CutSet of a tiny
real-speech corpus to a probed model (tiny settings appended as `a.b=c` overrides and probe flags)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TINY = {  # appended to the README's commands: seconds, not minutes
    "pretrain": ["train.steps=4", "train.warmup_steps=1", "train.eval_every=0", "train.ckpt_every=4",
                 "data.min_frames=10", "data.crop_frames=100", "data.batch_frames=400", "run.progress=off",
                 "run.tensorboard=false"],
    "probe": ["--max-epochs", "2", "--json"],
}  # fmt: skip


def _byod_commands() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("\n## Bring your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the section shows its commands in a bash block"
    return [shlex.split(line.split("#")[0]) for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def _corpus(root: Path, speech: Path) -> list[tuple[str, Path, str]]:
    """12 clips of 1.2 s of real speech, 3 speakers (labels only: the point is the plumbing)."""
    wav, sr = sf.read(speech, dtype="float32")
    (root / "audio").mkdir(parents=True)
    out = []
    for i in range(12):
        start = (i * sr // 3) % max(1, len(wav) - int(1.2 * sr))
        clip = root / "audio" / f"u{i:02d}.wav"
        sf.write(clip, wav[start : start + int(1.2 * sr)], sr)
        out.append((f"spk{i % 3}-u{i:02d}", clip, f"spk{i % 3}"))
    return out


def _kaldi(root: Path, clips: list[tuple[str, Path, str]]) -> Path:
    d = root / "data" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p, _ in clips))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, _, s in clips))
    (d / "text").write_text("".join(f"{u} SOME WORDS\n" for u, _, _ in clips))
    return d


def _lhotse(root: Path, clips: list[tuple[str, Path, str]]) -> Path:
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs = RecordingSet.from_recordings(Recording.from_file(p, recording_id=u) for u, p, _ in clips)
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=u, recording_id=u, start=0, duration=recs[u].duration, speaker=s, text="some words")
        for u, _, s in clips
    )
    CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(root / "cuts.jsonl.gz")
    return root / "cuts.jsonl.gz"


def test_the_section_is_at_most_six_commands() -> None:
    cmds = _byod_commands()
    assert 1 <= len(cmds) <= 6 and all(c[0] == "codec2vec" for c in cmds)
    assert [c[1] for c in cmds] == ["tokenize", "corpus", "pretrain", "probe"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["kaldi"])  # the lhotse route differs in its readers only (test_community_inputs)
def test_bring_your_own_data_runs(tmp_path: Path, lyra_dir: Path, speech_dir: Path, source: str) -> None:
    if source == "lhotse":
        pytest.importorskip("lhotse")
    clips = _corpus(tmp_path, speech_dir / "lyra_sample1_16kHz.wav")
    src = _kaldi(tmp_path, clips) if source == "kaldi" else _lhotse(tmp_path, clips)
    env = dict(os.environ, CODEC2VEC_LYRA_DIR=str(lyra_dir), CODEC2VEC_CACHE=str(tmp_path / "cache"))
    out = ""
    for cmd in _byod_commands():
        args = [str(src) if a == "data/train" else a for a in cmd[1:]]
        if args[0] == "corpus":
            args[1] = source
        args += TINY.get(args[0], [])
        proc = subprocess.run(
            [sys.executable, "-m", "codec2vec", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"{args}: {proc.stderr[-2000:]}"
        out = proc.stdout
    result = json.loads(out)
    assert result["task"] == "sid" and np.isfinite(result["value"])
    assert {r["model"] for r in result["references"]} >= {"codec", "random"}
    assert (tmp_path / "tasks" / "asr" / "train.jsonl").is_file()  # text present: an ASR folder too
