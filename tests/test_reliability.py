"""One regression test per reliability defect (hostile inputs, crashes, second processes).

Each test names the defect it guards; each failed on the code before its fix.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.audio import load_audio, scan_sources
from codec2vec.cli import main
from codec2vec.errors import AudioError, ConfigError, StoreError
from codec2vec.store import TokenStore
from codec2vec.tokenize import TokenizeOptions, tokenize
from conftest import make_store


def _opts(**kw) -> TokenizeOptions:
    return TokenizeOptions(codec="lyra", batch_size=4, shard_seconds=1.0, **kw)


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (links not followed)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# 1 ------------------------------------------------------------------------------------------------


def test_1_ids_are_checked_and_decode_stays_inside_out(tmp_path: Path, short_clips: Path, capsys) -> None:
    audio = tmp_path / "audio"
    shutil.copytree(short_clips, audio)
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = [
        {"path": "../audio/c0.wav"},  # derived id: 'audio/c0' (leading '..' dropped), safe
        {"path": "../audio/c1.wav", "id": "../audio/c1"},
        {"path": "../audio/c2.wav", "id": str(audio / "c2")},
        {"path": "../audio/c3.wav", "id": ".."},
        {"path": "../audio/c4.wav", "id": "a/\x01b"},
        {"path": "../audio/c5.wav", "id": "ok/c5"},
    ]
    manifest = lists / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = _tree(audio)
    store = tmp_path / "store"
    summary = tokenize([str(manifest)], store, _opts(), progress=False)
    assert summary["stored"] == 2 and summary["rejected"] == 4
    rejects = [json.loads(line) for line in (store / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"].split(": ")[0] for r in rejects) == [f"{manifest}:{n}" for n in (2, 3, 4, 5)]
    assert sorted(TokenStore.open(store).ids()) == ["audio/c0", "ok/c5"]
    assert main(["decode", str(store), "--out", str(tmp_path / "decoded")]) == 0
    assert _tree(audio) == before, "decode wrote into the source folder"
    assert sorted(_tree(tmp_path / "decoded")) == ["audio/c0.wav", "ok/c5.wav"]
    # The writer is the last line of defence, and decode proves every path before writing any.
    with pytest.raises(StoreError, match="absolute"), TokenStore.open(store).writer() as w:
        w.add("/etc/x", np.zeros((46, 3), dtype=np.int64), seconds=0.06)
    from codec2vec.store.decode import output_path

    with pytest.raises(StoreError, match="'..'"):
        output_path(tmp_path / "decoded", "../audio/c0", "wav")


# 2 ------------------------------------------------------------------------------------------------


def test_2_tokenize_reads_the_store_under_its_lock(tmp_path: Path, short_clips: Path, monkeypatch) -> None:
    """Another tokenize commits c0 after this one opened the store but before it took the lock."""
    import codec2vec.store.ingest as tk  # the clear ingest policy opens the store through it

    store_path = tmp_path / "store"
    tokenize([str(short_clips / "c0.wav")], tmp_path / "other", _opts(), progress=False)
    theirs = TokenStore.open(tmp_path / "other")
    real = tk.open_or_create

    def open_then_race(out, codec, coding="auto"):
        mine = real(out, codec, coding)
        other = TokenStore.open(out)  # the second process, committing in the window
        with other.writer() as w:
            w.add("c0", theirs["c0"], seconds=0.3)
        return mine

    monkeypatch.setattr(tk, "open_or_create", open_then_race)
    summary = tokenize([str(short_clips)], store_path, _opts(), progress=False)
    assert summary["skipped_already_stored"] == 1 and summary["stored"] == 5
    assert TokenStore.open(store_path).verify() == []


def test_2_verify_repair_keeps_one_copy_of_duplicates(tmp_path: Path) -> None:
    a = make_store(tmp_path / "a", {"x": 5, "y": 7})
    b = make_store(tmp_path / "b", {"y": 7, "z": 9})  # same codec and seed: 'y' has the same codes
    shutil.copy(b.shard_paths()[0], a.root / "shards" / "000001.c2s")  # y twice, z only here
    with pytest.raises(StoreError, match="also stored"):
        TokenStore.open(a.root)
    assert main(["verify", str(a.root)]) == 1
    assert main(["verify", str(a.root), "--repair"]) == 0
    fixed = TokenStore.open(a.root)
    assert sorted(fixed.ids()) == ["x", "y", "z"] and fixed.verify() == []
    assert np.array_equal(fixed["z"].numpy(), b["z"].numpy())
    (a.root / "shards" / "000000.c2s").unlink()  # x and y lost: repair names the loss, drops the record
    assert main(["verify", str(a.root), "--repair"]) == 0
    assert sorted(TokenStore.open(a.root).ids()) == ["z"]


# 3 ------------------------------------------------------------------------------------------------


def test_3_folder_scans_survive_link_loops(tmp_path: Path, short_clips: Path) -> None:
    root = tmp_path / "corpus"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(short_clips / "c0.wav", root / "a" / "b" / "x.wav")
    shutil.copy(short_clips / "c1.wav", root / "y.wav")
    os.symlink("..", root / "a" / "up")  # a/up/a/up/a/... forever
    os.symlink("../..", root / "a" / "b" / "top")  # a second loop: never finished before
    os.symlink("y.wav", root / "y_again.wav")  # the same file under two names
    items = scan_sources([root])
    assert sorted(it.id for it in items) == ["a/b/x", "y"]


# 4 ------------------------------------------------------------------------------------------------


def _wav_header(rate: int, channels: int, data_bytes: int, bits: int = 16) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", data_bytes))
    )


@pytest.mark.parametrize(
    ("rate", "channels", "reason"),
    [(1, 1, "sample rate 1 Hz"), (400_000, 1, "sample rate"), (16000, 65, "65 channels")],
)
def test_4_headers_are_bounded_before_reading(tmp_path: Path, rate: int, channels: int, reason: str) -> None:
    path = tmp_path / "tiny.wav"
    n = 10_000 // (2 * channels) * 2 * channels
    path.write_bytes(_wav_header(rate, channels, n) + bytes(n))  # 10 KB claiming e.g. 1 Hz
    with pytest.raises(AudioError, match=reason):
        load_audio(path, 16000)


def test_4_duration_bound_and_blocked_reads(tmp_path: Path, speech_dir: Path, monkeypatch) -> None:
    import codec2vec.audio as audio

    src = speech_dir / "lyra_sample1_16kHz.wav"
    with pytest.raises(AudioError, match="more than the"):
        load_audio(src, 16000, max_seconds=0.5)
    whole = load_audio(src, 24000)
    monkeypatch.setattr(audio, "STREAM_SECONDS", 0.25)  # force the blocked path on a short file
    blocked = load_audio(src, 24000)
    assert abs(blocked.shape[0] - whole.shape[0]) <= 1
    n = min(blocked.shape[0], whole.shape[0])
    assert np.abs(blocked[:n] - whole[:n]).max() < 1e-3  # the same audio, read in blocks


def test_4_long_files_are_streamed_through_the_codec(tmp_path: Path, speech_dir: Path, lyra_codec, monkeypatch) -> None:
    """Over LONG_SECONDS, tokenize reads, resamples and encodes block by block (bounded memory); the codes are
    exactly those of the whole audio (here with tiny blocks, on a short real file at 8 kHz -> 16 kHz)."""
    import codec2vec.audio as audio
    import codec2vec.tokenize as tk

    monkeypatch.setattr(audio, "STREAM_SECONDS", 0.37)
    monkeypatch.setattr(tk, "LONG_SECONDS", 0.5)
    src = speech_dir / "lyra_sample1_8kHz.wav"
    whole = load_audio(src, 16000)
    assert np.array_equal(np.concatenate(list(audio.audio_blocks(src, 16000))), whole)
    streamed = lyra_codec.encode_stream(audio.audio_blocks(src, 16000))
    assert np.array_equal(streamed, lyra_codec.encode_one(whole))
    summary = tokenize([str(src)], tmp_path / "s", _opts(), progress=False)
    assert summary["stored"] == 1
    assert np.array_equal(TokenStore.open(tmp_path / "s")["lyra_sample1_8kHz"].numpy(), streamed)
    (tmp_path / "cut.wav").write_bytes(src.read_bytes()[:-3000])  # truncated: rejected while streaming
    assert tokenize([str(tmp_path / "cut.wav")], tmp_path / "s", _opts(), progress=False)["rejected"] == 1


def test_4_long_utterances_are_packed_in_pieces(monkeypatch) -> None:
    from codec2vec.store import packing

    codes = np.random.default_rng(0).integers(0, 16, size=(46, 1000))
    whole = packing.pack(codes, 4)
    monkeypatch.setattr(packing, "PACK_FRAMES", 96)
    assert np.array_equal(packing.pack(codes, 4), whole)
    assert np.array_equal(packing.unpack(whole, 46, 4), codes)


# 5 ------------------------------------------------------------------------------------------------


def _two_shards(root: Path) -> TokenStore:
    store = make_store(root, {"a": 5, "b": 6})
    with store.writer() as w:
        w.add("c", np.ones((4, 7), dtype=np.int64), seconds=0.14)
    return store


def test_5_verify_sees_lost_shards_edited_meta_and_foreign_files(tmp_path: Path) -> None:
    s = _two_shards(tmp_path / "s")
    assert s.verify() == []
    (s.root / "shards" / "000001.c2s").unlink()
    assert any("000001.c2s: missing" in p for p in TokenStore.open(s.root, check=False).verify())
    with pytest.raises(StoreError, match="missing"):
        TokenStore.open(s.root)

    s = _two_shards(tmp_path / "t")
    shutil.rmtree(s.root / "shards")
    assert any("shards: folder missing" in p for p in TokenStore.open(s.root, check=False).verify())

    for key, value in (("name", "dac"), ("sample_rate", 24000), ("frame_rate", 75.0)):
        s = _two_shards(tmp_path / f"m_{key}")
        meta = json.loads((s.root / "meta.json").read_text())
        meta["codec"][key] = value
        (s.root / "meta.json").write_text(json.dumps(meta, indent=2))
        assert any("meta.json: edited" in p for p in TokenStore.open(s.root, check=False).verify()), key
        with pytest.raises(StoreError, match="edited"):
            TokenStore.open(s.root)

    s = _two_shards(tmp_path / "f")
    (s.root / "labels").mkdir()
    shutil.copy(s.root / "shards" / "000000.c2s", s.root / "labels" / "km.c2l")
    (s.root / "shards" / "notes.txt").write_text("hello")
    problems = TokenStore.open(s.root, check=False).verify()
    assert any("km.c2l: foreign file" in p for p in problems) and any("notes.txt: foreign" in p for p in problems)
    assert main(["verify", str(s.root), "--repair"]) == 0  # moved to STORE/foreign/, not deleted
    assert (s.root / "foreign" / "labels-km.c2l").is_file()


def test_5_format_1_stores_are_read_and_upgraded_on_first_write(tmp_path: Path) -> None:
    s = _two_shards(tmp_path / "old")
    (s.root / "contents.json").unlink()
    meta = json.loads((s.root / "meta.json").read_text())
    (s.root / "meta.json").write_text(json.dumps({**meta, "format_version": 1}, indent=2))
    old = TokenStore.open(s.root)
    assert sorted(old.ids()) == ["a", "b", "c"] and old.verify() == []
    with old.writer() as w:
        w.add("d", np.zeros((4, 3), dtype=np.int64), seconds=0.06)
    assert json.loads((s.root / "meta.json").read_text())["format_version"] == 2
    assert (s.root / "contents.json").is_file() and TokenStore.open(s.root).verify() == []


# 6 ------------------------------------------------------------------------------------------------


def test_6_synth_refuses_a_folder_that_is_not_its_corpus(tmp_path: Path) -> None:
    from codec2vec.corpora.synth import GENERATOR, SynthOptions, synth_corpus

    s = make_store(tmp_path / "store", {"a": 3})
    meta = (s.root / "meta.json").read_bytes()
    with pytest.raises(ConfigError, match="not a synth corpus"):
        synth_corpus(s.root, SynthOptions(hours=0.001), progress=False)
    assert (s.root / "meta.json").read_bytes() == meta
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("...")
    with pytest.raises(ConfigError, match="not empty"):
        synth_corpus(tmp_path / "mine", SynthOptions(hours=0.001), progress=False)
    done = tmp_path / "done"  # a finished corpus of the same settings: nothing to do, nothing rewritten
    done.mkdir()
    summary = {"generator": GENERATOR, "options": {**SynthOptions(hours=0.001).__dict__, "workers": 1}, "clips": 3}
    (done / "meta.json").write_text(json.dumps(summary))
    assert synth_corpus(done, SynthOptions(hours=0.001, workers=2), progress=False)["clips"] == 3
    assert sorted(p.name for p in done.iterdir()) == ["meta.json"]


# 7 ------------------------------------------------------------------------------------------------


def test_7_failed_merge_and_create_leave_no_hidden_folders(tmp_path: Path, monkeypatch) -> None:
    a = make_store(tmp_path / "a", {"x": 4})
    b = make_store(tmp_path / "b", {"y": 4})
    real = os.replace

    def full(src, dst, *args, **kw):  # the disk fills up while the merged shards are written
        if str(dst).endswith(".c2s"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", full)
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m")]) == 2
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    stale = tmp_path / ".m.tmp-killed"  # what a SIGKILLed merge leaves: removed by the next start
    stale.mkdir()
    (stale / "junk").write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 60, time.time() - 60))
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "m"]
    assert sorted(TokenStore.open(tmp_path / "m").ids()) == ["x", "y"]


# 8 ------------------------------------------------------------------------------------------------


def test_8_a_second_pretrain_on_a_run_dir_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a") as held:  # the first pretrain, still running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["pretrain", "configs/lyra_tiny.yaml", f"data.store={tmp_path / 'none'}", f"run.dir={run}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "in use by another pretrain" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written


# 9 ------------------------------------------------------------------------------------------------


def test_9_resume_refuses_changed_settings(tmp_path: Path) -> None:
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    saved = config_to_dict(load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    for ok in ("train.steps=999", "targets.weights.reconstruction=0.5", "train.threads=1"):
        check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", ok]))
    with pytest.raises(ConfigError, match=r"train\.lr .*-> 0\.1"):
        check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", "train.lr=0.1"]))


def test_9_resume_accepts_a_field_added_later_only_at_its_default(tmp_path: Path) -> None:
    """A checkpoint made before `targets.unmasked_weight` existed resumes when the field keeps its default."""
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    saved = config_to_dict(load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    del saved["targets"]["unmasked_weight"]
    check_resumable(saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"targets\.unmasked_weight \(None -> 0\.5\)"):
        check_resumable(
            saved, load_config("configs/lyra_tiny.yaml", [f"run.dir={tmp_path}", "targets.unmasked_weight=0.5"])
        )


def test_9_label_sets_carry_a_fingerprint_that_resume_checks(tmp_path: Path) -> None:
    from codec2vec.pretrain.config import check_label_fingerprints

    s = make_store(tmp_path / "s", {"a": 5, "b": 6})
    first = s.write_labels("km", {"a": np.zeros(5, np.int64), "b": np.ones(6, np.int64)}, 4)
    assert TokenStore.open(s.root).labels("km").fingerprint == first
    check_label_fingerprints({"km": first}, TokenStore.open(s.root), ["km"])  # unchanged: fine
    second = s.write_labels("km", {"a": np.full(5, 2, np.int64), "b": np.ones(6, np.int64)}, 4)  # re-fit
    assert second != first and TokenStore.open(s.root).verify() == []
    with pytest.raises(ConfigError, match="label set 'km'.*changed"):
        check_label_fingerprints({"km": first}, TokenStore.open(s.root), ["km"])


# 10 -----------------------------------------------------------------------------------------------


def test_10_disk_full_names_the_file(tmp_path: Path, short_clips: Path, monkeypatch, capsys) -> None:
    import codec2vec.files as files

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(["tokenize", str(short_clips / "c0.wav"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "codebooks.safetensors" in err
    assert os.listdir(tmp_path) == []  # the half-made store's hidden folder is gone


def test_10_out_naming_a_file_and_broken_rejects(tmp_path: Path, short_clips: Path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert main(["tokenize", str(short_clips / "c0.wav"), "--out", str(a_file)]) == 2
    s = make_store(tmp_path / "s", {"a": 3})
    assert main(["decode", str(s.root), "--out", str(a_file)]) == 2
    assert main(["merge", str(s.root), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("a_file" in e and "unexpected" not in e for e in err)
    assert a_file.read_text() == "mine"
    store = tmp_path / "store"
    tokenize([str(short_clips / "c0.wav")], store, _opts(), progress=False)
    (store / "rejects.jsonl").write_text('{"path": "x.wav", "reason": "r"}\n{"path": broken\n')
    summary = tokenize([str(short_clips)], store, _opts(), progress=False)
    assert summary["stored"] == 5 and "unreadable line skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=nan", "train.lr"),
        ("train.lr=5", "train.lr"),
        ("train.eps=0", "train.eps"),
        ("train.eps=inf", "train.eps"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.dim=0", "model.dim"),
        ("model.dim=100000000", "model.dim"),
        ("model.num_heads=7", "model.dim"),
        ("train.threads=5000", "train.threads"),
        ("train.grad_clip=nan", "train.grad_clip"),
    ],
)
def test_10_bad_numbers_are_one_line_errors(override: str, key: str, capsys) -> None:
    code = main(["pretrain", "configs/lyra_tiny.yaml", override, "data.store=x", "run.dir=/nonexistent/run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err


# 11 -----------------------------------------------------------------------------------------------


def test_11_non_utf8_names_are_stored_and_decoded(tmp_path: Path, short_clips: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 bytes: not UTF-8
    shutil.copy(short_clips / "c0.wav", src / name)
    summary = tokenize([str(src)], tmp_path / "s", _opts(), progress=False)
    assert summary["stored"] == 1 and TokenStore.open(tmp_path / "s").ids() == [name[:-4]]
    assert main(["decode", str(tmp_path / "s"), "--out", str(tmp_path / "out")]) == 0
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"caf\xe9.wav"]
    assert sf.info(os.fsencode(tmp_path / "out" / name)).samplerate == 16000


def test_11_store_root_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = make_store(tmp_path / "s", {"a": 3})
    finally:
        os.umask(old)
    assert (s.root.stat().st_mode & 0o777) == 0o755
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in s.root.rglob("*") if p.is_file())


def test_11_kmeans_checks_the_label_name_before_fitting(tmp_path: Path, monkeypatch) -> None:
    import codec2vec.kmeans as km

    s = make_store(tmp_path / "s", {"a": 30})

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the name")

    monkeypatch.setattr(km, "fit_kmeans", no_fit)
    monkeypatch.setattr(km, "sample_frames", no_fit)
    with pytest.raises(StoreError, match="label set name"):
        km.run_kmeans(str(s.root), km.KMeansOptions(name="../evil", clusters=2))
