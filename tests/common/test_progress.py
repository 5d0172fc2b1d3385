"""Progress in batch logs: with stderr a file (a cluster job's log), every long verb prints plain progress lines
every CODEC2VEC_PROGRESS_SECONDS; pretrain also prints its dev rows and a closing line naming the last
checkpoint and the next commands, and shows no accuracy before one was measured (also after a resume)."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import structured_store, synthetic_task, tiny_config


@pytest.fixture()
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `to_file` sends stderr; a plain line is due at every update."""
    monkeypatch.setenv("CODEC2VEC_PROGRESS_SECONDS", "0")
    return tmp_path / "job.log"


@contextlib.contextmanager
def to_file(path: Path) -> Iterator[None]:
    """stderr redirected to a file, as in a batch job (inside the test: pytest resets sys.stderr per phase)."""
    old = sys.stderr
    with open(path, "a") as f:
        sys.stderr = f
        try:
            yield
        finally:
            sys.stderr = old


def test_plain_lines_every_interval_with_count_eta_and_the_verbs_figures(log: Path) -> None:
    from codec2vec.common.progress import Progress, interval

    with to_file(log):
        bar = Progress("tokenize", 4, unit="utt")
        for i in range(4):
            bar.update(1, f"{i / 10:.2f} h audio, 40.0x real time")
        bar.close()
        Progress("quiet", 4, enabled=False).update(1, "never shown")
    lines = log.read_text().splitlines()
    assert lines[0].startswith("tokenize: 1/4 utt (25%); 0.00 h audio, 40.0x real time; 0m00s elapsed, ETA 0m0")
    assert lines[3].startswith("tokenize: 4/4 utt (100%); 0.30 h audio") and "ETA" not in lines[3]
    assert len(lines) == 4 and "\r" not in log.read_text()  # no bar in a log
    assert interval() == 0.0


def test_interval_defaults_to_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from codec2vec.common.progress import Ticker, interval

    monkeypatch.delenv("CODEC2VEC_PROGRESS_SECONDS", raising=False)
    assert interval() == 30.0
    monkeypatch.setenv("CODEC2VEC_PROGRESS_SECONDS", "5")
    assert interval() == 5.0
    assert not Ticker().due()  # 5 s have not passed


def test_pretrain_logs_progress_dev_rows_and_next_steps_and_resumes_without_unmeasured_accuracy(
    log: Path, tmp_path: Path
) -> None:
    from codec2vec.cli import main
    from codec2vec.pretrain.config import save_config

    structured_store(tmp_path / "store", n=12)
    keys = ("train.steps=4", "train.ckpt_every=4", "train.eval_every=2", "train.log_every=3", "run.progress=auto")
    save_config(tiny_config(tmp_path / "store", tmp_path / "run", *keys), tmp_path / "c.yaml")
    with to_file(log):
        assert main(["pretrain", str(tmp_path / "c.yaml")]) == 0
        assert main(["pretrain", str(tmp_path / "c.yaml"), "train.steps=6"]) == 0  # a resume
    text = log.read_text()
    steps = re.findall(r"^pretrain: step (\d+)/\d+ loss [\d.]+ (.*)$", text, flags=re.M)
    assert [int(s) for s, _ in steps] == [1, 2, 3, 4, 5, 6]
    for _, rest in steps:
        acc = re.search(r"acc_reconstruction ([\d.]+)", rest)
        assert acc is not None and float(acc.group(1)) > 0.0, rest  # measured, also right after the resume
        assert re.search(r"[\d,]+ frames/s( data wait \d+%)? ETA \d+m\d+s$", rest), rest
    assert "pretrain: step 4 dev loss" in text and "pretrain: step 6 dev loss" in text
    done = [x for x in text.splitlines() if x.startswith("pretrain: done at step")]
    assert len(done) == 2 and "step-00000006" in done[1] and f"codec2vec extract {tmp_path / 'run'}" in done[1]
    assert "codec2vec probe pr --ckpt" in done[1]


def test_pretrain_on_a_terminal_shows_measured_accuracy_after_a_resume_and_dev_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codec2vec.cli import main
    from codec2vec.pretrain.config import save_config

    structured_store(tmp_path / "store", n=12)
    keys = ("train.steps=4", "train.ckpt_every=4", "train.eval_every=4", "train.log_every=4", "run.progress=on")
    save_config(tiny_config(tmp_path / "store", tmp_path / "run", *keys), tmp_path / "c.yaml")
    path = tmp_path / "tty.log"
    with to_file(path):
        assert main(["pretrain", str(tmp_path / "c.yaml")]) == 0
        assert main(["pretrain", str(tmp_path / "c.yaml"), "train.steps=7"]) == 0
    text = path.read_text()
    live = [x for x in re.split(r"[\r\n]", text) if x.startswith("step ")]
    assert any(x.startswith("step 5/7") for x in live)  # the live line after the resume ...
    assert not re.search(r"acc_reconstruction 0\.000", text), text  # ... never shows an unmeasured 0.000
    assert "pretrain: step 4 dev loss" in text and "pretrain: step 7 dev loss" in text  # dev rows on a terminal


def test_kmeans_extract_and_probe_print_plain_lines(log: Path, tmp_path: Path) -> None:
    from codec2vec.cli import main
    from codec2vec.pretrain.loop import pretrain
    from codec2vec.probe.runner import probe_features

    structured_store(tmp_path / "store", n=12)
    store = str(tmp_path / "store")
    pretrain(tiny_config(tmp_path / "store", tmp_path / "run", "train.steps=1"))
    fd, rows = synthetic_task(tmp_path / "sid", "sid", (40, 10, 20))
    with to_file(log):
        assert main(["kmeans", store, "--source", "codec", "--clusters", "4", "--name", "km"]) == 0
        assert main(["extract", str(tmp_path / "run"), store, "--out", str(tmp_path / "feats")]) == 0
        probe_features("sid", fdir=fd, rows=rows, max_epochs=3, patience=10, progress=True)
    text = log.read_text()
    assert re.search(r"^kmeans: sampling: \d+/\d+ utt \(\d+%\); [\d,]+ frames", text, flags=re.M), text
    assert re.search(r"^kmeans: labelling: 12/12 utt \(100%\); [\d,]+ frames", text, flags=re.M), text
    assert re.search(r"^features \S+: 12/12 utt \(100%\); [\d,]+ frames", text, flags=re.M), text
    assert re.search(r"^probe sid: 1/3 epochs \(33%\); epoch 1 dev accuracy [\d.]+ \(best [\d.]+\)", text, re.M), text


def test_tokenize_prints_utterances_hours_real_time_and_eta(log: Path, tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.cli import main

    with to_file(log):
        assert main(["tokenize", str(short_clips), "--out", str(tmp_path / "store")]) == 0
    text = log.read_text()
    assert re.search(r"^tokenize: 1/6 utt \(17%\); [\d.]+ h audio, [\d.]+x real time, 0 rejected; .* ETA ", text, re.M)
    assert re.search(r"^tokenize: 6/6 utt \(100%\)", text, flags=re.M), text


def test_heartbeat_prints_while_a_stage_without_a_loop_runs(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from codec2vec.common.progress import heartbeat

    monkeypatch.setenv("CODEC2VEC_PROGRESS_SECONDS", "0.05")
    with to_file(log):
        with heartbeat("kmeans: fitting"):
            time.sleep(0.4)
        with heartbeat("bench: storage", enabled=False):
            time.sleep(0.2)
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all(re.fullmatch(r"kmeans: fitting: running, 0m00s elapsed", x) for x in lines), lines
