"""`codec2vec tokenize / info / verify / decode / merge` end to end on real speech, through the CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.cli import main
from codec2vec.corpora.audio import load_audio
from codec2vec.store import TokenStore
from codec2vec.tokenize import tokenize
from conftest import KILLS, cli_ok, kill_at, lyra_options

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
    kill_at([*args, "--out", str(killed)], lambda: len(list(killed.glob("shards/*.c2s"))) >= 3, timeout=120)
    partial = TokenStore.open(killed)
    assert 0 < len(partial) < 192, "the run was not interrupted midway"
    assert partial.verify() == []
    run(*args, "--out", str(killed))
    final = TokenStore.open(killed)
    rej = (killed / "rejects.jsonl").read_text() if (killed / "rejects.jsonl").exists() else ""
    from codec2vec.corpora.audio import scan_sources

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


def test_tokenize_rereads_the_store_under_its_lock(tmp_path: Path, short_clips: Path, monkeypatch) -> None:
    """Another tokenize commits c0 after this one opened the store but before it took the lock."""
    import codec2vec.store.ingest as tk  # the clear ingest policy opens the store through it

    store_path = tmp_path / "store"
    tokenize([str(short_clips / "c0.wav")], tmp_path / "other", lyra_options(), progress=False)
    theirs = TokenStore.open(tmp_path / "other")
    real = tk.open_or_create

    def open_then_race(out, codec, coding="auto"):
        mine = real(out, codec, coding)
        other = TokenStore.open(out)  # the second process, committing in the window
        with other.writer() as w:
            w.add("c0", theirs["c0"], seconds=0.3)
        return mine

    monkeypatch.setattr(tk, "open_or_create", open_then_race)
    summary = tokenize([str(short_clips)], store_path, lyra_options(), progress=False)
    assert summary["skipped_already_stored"] == 1 and summary["stored"] == 5
    assert TokenStore.open(store_path).verify() == []


def test_long_files_are_streamed_through_the_codec_with_the_same_codes(
    tmp_path: Path, speech_dir: Path, lyra_codec, monkeypatch
) -> None:
    """Over LONG_SECONDS, tokenize reads, resamples and encodes block by block (bounded memory); the codes are
    exactly those of the whole audio (here with tiny blocks, on a short real file at 8 kHz -> 16 kHz)."""
    import codec2vec.corpora.audio as audio
    import codec2vec.tokenize as tk

    monkeypatch.setattr(audio, "STREAM_SECONDS", 0.37)
    monkeypatch.setattr(tk, "LONG_SECONDS", 0.5)
    src = speech_dir / "lyra_sample1_8kHz.wav"
    whole = load_audio(src, 16000)
    assert np.array_equal(np.concatenate(list(audio.audio_blocks(src, 16000))), whole)
    streamed = lyra_codec.encode_stream(audio.audio_blocks(src, 16000))
    assert np.array_equal(streamed, lyra_codec.encode_one(whole))
    summary = tokenize([str(src)], tmp_path / "s", lyra_options(), progress=False)
    assert summary["stored"] == 1
    assert np.array_equal(TokenStore.open(tmp_path / "s")["lyra_sample1_8kHz"].numpy(), streamed)
    (tmp_path / "cut.wav").write_bytes(src.read_bytes()[:-3000])  # truncated: rejected while streaming
    assert tokenize([str(tmp_path / "cut.wav")], tmp_path / "s", lyra_options(), progress=False)["rejected"] == 1


def test_tokenize_on_a_full_disk_is_one_line_naming_the_file(
    tmp_path: Path, short_clips: Path, monkeypatch, capsys
) -> None:
    import codec2vec.common.files as files

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(["tokenize", str(short_clips / "c0.wav"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "codebooks.safetensors" in err
    assert os.listdir(tmp_path) == []  # the half-made store's hidden folder is gone


def _same_codes(store: TokenStore, ref: TokenStore) -> None:
    for uid in store.ids():
        assert np.array_equal(store[uid].numpy(), ref[uid].numpy()), uid


@pytest.mark.slow
def test_tokenize_killed_at_random_points_keeps_a_sound_store_and_finishes_it(
    ninety_clips: Path, ninety_clips_store: TokenStore, tmp_path: Path
) -> None:
    """`tokenize` SIGKILLed at seeded random points: after every kill the store is sound, holds nothing twice and
    loses nothing committed; the same command then finishes the job with the codes of an uninterrupted run."""
    args = ["tokenize", str(ninety_clips), "--batch-size", "2", "--shard-seconds", "2"]
    ref = ninety_clips_store
    rng = np.random.default_rng(8)
    out = tmp_path / "killed"
    partial = []
    for _ in range(KILLS):
        target = len(list(out.glob("shards/*.c2s"))) + int(rng.integers(1, 4))
        kill_at(
            [*args, "--out", str(out)],
            lambda t=target: len(list(out.glob("shards/*.c2s"))) >= t,
            extra=rng.uniform(0, 0.05),
        )
        if (out / "meta.json").exists():
            store = TokenStore.open(out)  # refuses an id stored twice or a recorded shard missing
            assert store.verify() == [] and set(store.ids()) <= set(ref.ids())
            _same_codes(store, ref)
            partial.append(len(store))
    print(f"tokenize: utterances stored after each kill: {partial}")
    # Kills land at progress points (plus a short random delay): on a fast, quiet machine the last one may find
    # the job done, so most, not all, must land mid-job; what was stored never shrinks.
    assert sum(0 < n < len(ref) for n in partial) >= KILLS - 2 and partial == sorted(partial), partial
    cli_ok([*args, "--out", str(out)])
    final = TokenStore.open(out)
    assert sorted(final.ids()) == sorted(ref.ids()) and final.verify() == []
    _same_codes(final, ref)
