"""`codec2vec tokenize / info / verify / decode / merge` end to end on real speech, through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.audio import load_audio
from codec2vec.store import TokenStore

CLI = [sys.executable, "-m", "codec2vec"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stderr}")
    return proc


def same_codes(a: Path, b: Path) -> None:
    sa, sb = TokenStore.open(a), TokenStore.open(b)
    assert sorted(sa.ids()) == sorted(sb.ids())
    for uid in sa.ids():
        assert np.array_equal(sa[uid].numpy(), sb[uid].numpy()), uid


def _log_spec(x: np.ndarray) -> np.ndarray:
    from scipy.signal import stft

    _, _, s = stft(x, 16000, nperseg=512, noverlap=384)
    return np.log(np.abs(s) ** 2 + 1e-8)


def test_real_speech_round_trip(tmp_path: Path, speech_dir: Path) -> None:
    store = tmp_path / "store"
    files = sorted(speech_dir.glob("*.wav"))
    run("tokenize", *map(str, files), "--out", str(store), "--codec", "lyra")
    s = TokenStore.open(store)
    assert len(s) == len(files)
    for f in files:
        samples_16k = len(load_audio(f, 16000))
        assert abs(s.num_frames(f.stem) - -(-samples_16k // 320)) <= 1, f
    run("decode", str(store), "--out", str(tmp_path / "audio"))
    for f in files:
        ref = load_audio(f, 16000)
        out, sr = sf.read(tmp_path / "audio" / f"{f.stem}.wav", dtype="float32")
        assert sr == 16000
        n = min(len(ref), len(out))
        corr = np.corrcoef(_log_spec(ref[:n]).ravel(), _log_spec(out[:n]).ravel())[0, 1]
        assert corr >= 0.85, (f.name, corr)
    info = json.loads(run("info", str(store), "--json").stdout)
    assert info["utterances"] == len(files) and info["codec"]["name"] == "lyra"
    assert {"frames", "seconds", "bytes", "kbps", "source_bytes", "ratio_to_source", "ratio_to_pcm16"} <= set(info)
    assert info["codes_kbps"] == pytest.approx(9.2, rel=0.01)


def test_bad_inputs_are_rejected_with_reasons(tmp_path: Path, bad_corpus: Path) -> None:
    store = tmp_path / "store"
    proc = run("tokenize", str(bad_corpus), "--out", str(store), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    s = TokenStore.open(store)
    assert sorted(s.ids()) == ["lyra_sample1_16kHz", "lyra_sample1_8kHz", "lyra_sample2_16kHz"]
    rejects = {
        Path(r["path"]).name: r["reason"] for r in map(json.loads, (store / "rejects.jsonl").read_text().splitlines())
    }
    assert set(rejects) == {"truncated.wav", "empty.wav", "notes.wav", "nan.wav"}
    assert "truncated" in rejects["truncated.wav"]
    assert "empty" in rejects["empty.wav"]
    assert "not readable as audio" in rejects["notes.wav"]
    assert "NaN" in rejects["nan.wav"]
    assert all(name in reason for name, reason in rejects.items())  # each reason names its file
    # Running again stores nothing twice and still reports the rejects.
    again = run("tokenize", str(bad_corpus), "--out", str(store), "--json", check=False)
    summary = json.loads(again.stdout)
    assert again.returncode == 3 and summary["stored"] == 0 and summary["rejected"] == 4
    assert len(TokenStore.open(store)) == 3 and run("verify", str(store)).returncode == 0


def _big_corpus(speech_corpus: Path, root: Path, copies: int) -> Path:
    for c in range(copies):
        shutil.copytree(speech_corpus, root / f"part{c}")
    return root


@pytest.mark.slow
def test_sigkill_then_resume_equals_one_go(tmp_path: Path, speech_corpus: Path) -> None:
    corpus = _big_corpus(speech_corpus, tmp_path / "corpus", 8)  # 192 files
    args = ["tokenize", str(corpus), "--batch-size", "2", "--shard-seconds", "3"]
    run(*args, "--out", str(tmp_path / "one_go"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (
        time.time() < deadline and len(list((killed / "shards").glob("*.c2s"))) < 3
        if (killed / "shards").exists()
        else True
    ):
        time.sleep(0.005)
        if proc.poll() is not None:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = TokenStore.open(killed)
    assert 0 < len(partial) < 192, "the run was not interrupted midway"
    assert partial.verify() == []
    run(*args, "--out", str(killed))
    final = TokenStore.open(killed)
    rej = (killed / "rejects.jsonl").read_text() if (killed / "rejects.jsonl").exists() else ""
    from codec2vec.audio import scan_sources

    missing = {i.id for i in scan_sources([corpus])} - set(final.ids())
    assert len(final) == len(set(final.ids())) == 192, (
        rej,
        len(partial),
        missing,
        sorted(os.listdir(killed / "shards")),
    )
    assert final.verify() == []
    same_codes(killed, tmp_path / "one_go")


@pytest.mark.slow
def test_workers_shards_and_merge(tmp_path: Path, speech_corpus: Path) -> None:
    run("tokenize", str(speech_corpus), "--out", str(tmp_path / "ref"))
    run("tokenize", str(speech_corpus), "--out", str(tmp_path / "w2"), "--workers", "2")
    same_codes(tmp_path / "ref", tmp_path / "w2")
    for i in range(3):
        run("tokenize", str(speech_corpus), "--out", str(tmp_path / f"part{i}"), "--shard", f"{i}/3")
    sizes = [len(TokenStore.open(tmp_path / f"part{i}")) for i in range(3)]
    assert sizes == [8, 8, 8]
    run("merge", *(str(tmp_path / f"part{i}") for i in range(3)), "--out", str(tmp_path / "merged"))
    same_codes(tmp_path / "merged", tmp_path / "ref")
    assert run("verify", str(tmp_path / "merged")).returncode == 0


def test_manifests_carry_ids_and_metadata(tmp_path: Path, speech_dir: Path) -> None:
    tsv = tmp_path / "list.tsv"
    tsv.write_text(f"id\tpath\tspeaker\nA\t{speech_dir / 'lyra_sample1_16kHz.wav'}\tann\n")
    jsonl = tmp_path / "sub" / "list.jsonl"
    jsonl.parent.mkdir()
    shutil.copy(speech_dir / "lyra_sample2_16kHz.wav", jsonl.parent / "b.wav")
    jsonl.write_text(json.dumps({"path": "b.wav", "speaker": "bob", "split": "dev"}) + "\n")
    run("tokenize", str(tsv), str(jsonl), "--out", str(tmp_path / "s"))
    s = TokenStore.open(tmp_path / "s")
    assert sorted(s.ids()) == ["A", "b"]
    assert s.entry("A")["extra"] == {"speaker": "ann"}
    assert s.entry("b")["extra"] == {"speaker": "bob", "split": "dev"}


@pytest.mark.slow
def test_verify_names_a_damaged_shard_and_codec_mismatch_is_refused(tmp_path: Path, speech_dir: Path) -> None:
    store = tmp_path / "s"
    run("tokenize", str(speech_dir / "lyra_sample1_16kHz.wav"), "--out", str(store))
    shard = next((store / "shards").glob("*.c2s"))
    blob = bytearray(shard.read_bytes())
    blob[40] ^= 0x01
    shard.write_bytes(bytes(blob))
    proc = run("verify", str(store), check=False)
    assert proc.returncode != 0 and shard.name in proc.stderr
    proc = run("decode", str(store), "--out", str(tmp_path / "a"), check=False)
    assert proc.returncode == 2 and "checksum" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(
        "tokenize",
        str(speech_dir / "lyra_sample2_16kHz.wav"),
        "--out",
        str(store),
        "--num-codebooks",
        "16",
        check=False,
    )
    assert proc.returncode == 2 and "not lyra" in proc.stderr
