"""The second reliability pass: one regression test per defect outside the store internals (merge, demo, private
stores, extract, checkpoints, anonymize, probe, kmeans, audio). Each fails on the code before its fix."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from codec2vec.cli import main
from codec2vec.privacy.keys import load_key
from codec2vec.store import TokenStore
from conftest import SPEECH, make_store


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "unexpected" not in err, err
    for w in words:
        assert w in err, err
    return err


# merge: privacy and scrambling must agree, and are carried ---------------------------------------------------


def _scrambled(tmp_path: Path, name: str, key_name: str, seed: int) -> Path:
    from codec2vec.privacy.anonymize import anonymize_store

    clear = make_store(tmp_path / f"{name}-clear", {f"{name}{i}": 20 + i for i in range(3)}, seed=seed)
    key = load_key(tmp_path / key_name, create=True)
    anonymize_store(clear.root, tmp_path / name, key=key)
    return tmp_path / name


def test_merge_refuses_mixed_scrambling_and_carries_the_flags(tmp_path: Path, capsys) -> None:
    a = _scrambled(tmp_path, "a", "k1", 0)
    b = _scrambled(tmp_path, "b", "k1", 1)
    c = _scrambled(tmp_path, "c", "k2", 2)
    clear = make_store(tmp_path / "clear", {"x0": 20}, seed=3).root
    for other in (c, clear):  # another key, or clear codes: refused, nothing written
        assert main(["merge", str(a), str(other), "--out", str(tmp_path / "bad")]) == 2
        _one_line_error(capsys, "scrambl", "cannot merge")
        assert not (tmp_path / "bad").exists()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    merged = TokenStore.open(tmp_path / "ab")
    assert merged.meta["scrambled"] == TokenStore.open(a).meta["scrambled"]
    assert merged.info()["scrambled"] and len(merged) == 6
    assert not merged.verify()


def test_merge_refuses_private_with_clear_or_another_key_and_keeps_private(tmp_path: Path, capsys) -> None:
    from codec2vec.privacy.private import _mark_private

    stores = {}
    for name, key in (("p1", "k1"), ("p2", "k1"), ("p3", "k2")):
        s = make_store(tmp_path / name, {f"{name}u": 30}, seed=len(stores))
        stores[name] = _mark_private(s, load_key(tmp_path / key, create=True), ("split",)).root
    clear = make_store(tmp_path / "clear", {"x": 30}).root
    for other in (stores["p3"], clear):
        assert main(["merge", str(stores["p1"]), str(other), "--out", str(tmp_path / "bad")]) == 2
        _one_line_error(capsys, "private", "cannot merge")
    assert main(["merge", str(stores["p1"]), str(stores["p2"]), "--out", str(tmp_path / "m")]) == 0
    merged = TokenStore.open(tmp_path / "m")
    assert (
        merged.info()["private"]
        and merged.meta["private"]["key_check"] == TokenStore.open(stores["p1"]).meta["private"]["key_check"]
    )


# demo: never writes into a folder that is not its own ----------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_refuses_a_users_folder_before_writing_anything(tmp_path: Path, capsys) -> None:
    user = tmp_path / "mine"
    (user / "tasks" / "pr").mkdir(parents=True)
    (user / "tasks" / "pr" / "train.jsonl").write_text('{"id": "precious"}\n')
    (user / "corpus").mkdir()
    (user / "corpus" / "thesis.wav").write_bytes(b"RIFF....")
    (user / "results.json").write_text("{}")
    before = _tree(user)
    assert main(["demo", "--out", str(user), "--small"]) == 2
    _one_line_error(capsys, str(user), "not a codec2vec demo folder")
    assert _tree(user) == before
    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "afile"), "--small"]) == 2
    _one_line_error(capsys, "not a folder")
    from codec2vec.demo.stages import MARKER, claim_folder

    fresh = tmp_path / "fresh"  # absent (or empty): claimed with the marker, then resumable
    claim_folder(fresh)
    assert (fresh / MARKER).is_file()
    (fresh / "stages").mkdir()
    (fresh / "stages" / "synth.json").write_text("{}")
    claim_folder(fresh)  # its own folder: resumed
    old = tmp_path / "old_demo"  # a demo folder of a version before the marker
    (old / "stages").mkdir(parents=True)
    (old / "corpus").mkdir()
    (old / "stages" / "synth.json").write_text("{}")
    claim_folder(old)
    assert (old / MARKER).is_file()


# private stores: rejects, id maps --------------------------------------------------------------------------


def test_private_into_an_empty_clear_store_drops_its_named_rejects(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.tokenize import TokenizeOptions, tokenize

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "secret_meeting_alice.wav").write_text("not audio")
    out = tmp_path / "st"
    tokenize([str(bad)], out, TokenizeOptions(codec="lyra"), progress=False)  # a clear store, empty, one reject
    assert "secret_meeting_alice" in (out / "rejects.jsonl").read_text()
    tokenize([str(short_clips)], out, TokenizeOptions(codec="lyra", private=True), progress=False)
    assert TokenStore.open(out).meta.get("private") and len(TokenStore.open(out)) == 6
    leaked = [p for p in out.rglob("*") if p.is_file() and b"secret_meeting" in p.read_bytes()]
    assert not leaked


def test_private_rejects_beside_the_id_map_are_0600(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.tokenize import TokenizeOptions, tokenize

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes((short_clips / "c0.wav").read_bytes())
    (src / "broken.wav").write_text("not audio")
    out = tmp_path / "st"
    tokenize([str(src)], out, TokenizeOptions(codec="lyra", private=True), progress=False)
    rejects = tmp_path / "st.ids.rejects.jsonl"
    assert "broken.wav" in rejects.read_text()
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ['{"id": "a", "path": "x.wav", "label": "yes"}\n', "this is not json\n"])
def test_an_id_map_that_is_not_ours_is_refused_before_anything_is_written(
    tmp_path: Path, short_clips: Path, capsys, content: str
) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(content)
    os.chmod(manifest, 0o644)
    out = tmp_path / "st"
    assert main(["tokenize", str(short_clips), "--out", str(out), "--private", "--id-map", str(manifest)]) == 2
    _one_line_error(capsys, str(manifest), "not a codec2vec id map")
    assert manifest.read_text() == content and stat.S_IMODE(manifest.stat().st_mode) == 0o644
    assert not out.exists() and not (tmp_path / "st.key").exists()
    src = make_store(tmp_path / "src", {"u1": 20}).root
    argv = ["anonymize", str(src), "--out", str(tmp_path / "anon"), "--private", "--id-map", str(manifest)]
    assert main(argv) == 2
    _one_line_error(capsys, "not a codec2vec id map")
    assert manifest.read_text() == content and not (tmp_path / "anon.key").exists()


# no output inside an input store -------------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_output_lands_inside_an_input_store(tmp_path: Path, capsys) -> None:
    src = make_store(tmp_path / "src", {"u1": 20, "u2": 30}).root
    other = make_store(tmp_path / "other", {"u3": 20}).root
    before = _files(src)
    calls = [
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--scramble-key", str(src / "shards" / "key.c2s")],
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--private-key", str(src / "k.key")],
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--private", "--id-map", str(src / "ids.jsonl")],
        ["anonymize", str(src), "--out", str(src / "labels" / "anon")],
        ["merge", str(src), str(other), "--out", str(src / "merged")],
        ["decode", str(src), "--out", str(src / "shards")],
    ]
    for argv in calls:
        assert main(argv) == 2, argv
        _one_line_error(capsys, "inside the input")
        assert _files(src) == before, argv
    assert not TokenStore.open(src).verify()


def test_a_killed_anonymize_leaves_nothing_the_next_run_does_not_remove(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    src = make_store(tmp_path / "src", {f"u{i}": 2000 for i in range(40)}).root
    key = tmp_path / "k.key"
    load_key(key, create=True)
    out = tmp_path / "anon"
    argv = [sys.executable, "-m", "codec2vec", "anonymize", str(src), "--out", str(out), "--scramble-key", str(key)]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".anon")] and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".anon")]
    if proc.returncode != -9 or not left:
        pytest.skip("the run finished before it could be killed")
    time.sleep(1.1)  # older than the instant between making a build folder and locking it
    assert main(["anonymize", str(src), "--out", str(out), "--scramble-key", str(key)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".anon")]
    assert len(TokenStore.open(out)) == 40


# resume: the same store named by a relative path ---------------------------------------------------------


def test_resume_compares_store_paths_resolved(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.errors import ConfigError
    from codec2vec.pretrain.config import check_resumable, config_to_dict, load_config

    (tmp_path / "store").mkdir()
    (tmp_path / "other").mkdir()
    config = Path(__file__).resolve().parents[1] / "configs" / "lyra_tiny.yaml"
    saved = config_to_dict(load_config(config, [f"data.store={tmp_path / 'store'}"]))
    monkeypatch.chdir(tmp_path)
    for same in ("store", "./store/", "../" + tmp_path.name + "/store"):
        check_resumable(saved, load_config(config, [f"data.store={same}"]))
    with pytest.raises(ConfigError, match="data.store"):
        check_resumable(saved, load_config(config, ["data.store=other"]))


# a link to a device is "not a regular file" ----------------------------------------------------------------


def test_a_link_to_dev_zero_is_rejected_as_not_a_regular_file(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.audio import load_audio
    from codec2vec.errors import AudioError
    from codec2vec.tokenize import TokenizeOptions, tokenize

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.wav").write_bytes((short_clips / "c1.wav").read_bytes())
    (src / "zero.wav").symlink_to("/dev/zero")
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(src / "zero.wav")
    summary = tokenize([str(src)], tmp_path / "st", TokenizeOptions(codec="lyra"), progress=False)
    assert summary["stored"] == 1 and summary["rejected"] == 1
    assert "not a regular file" in summary["rejects"][0]["reason"]


# checkpoints: the architecture is checked against the weights before anything is built ----------------------


def _tiny_checkpoint(path: Path, frontend: str = "codec", info=None) -> Path:
    from codec2vec.model import Codec2VecEncoder
    from codec2vec.pretrain.checkpoint import save_checkpoint
    from codec2vec.pretrain.config import config_to_dict, load_config
    from conftest import fake_info

    config = Path(__file__).resolve().parents[1] / "configs" / "lyra_tiny.yaml"
    cfg = load_config(config, ["model.num_layers=2", f"model.frontend={frontend}", "targets=clusters"])
    info = info or fake_info(4, 16, name="lyra", config={"k": 4, "v": 16})  # make_store's codec
    torch.manual_seed(0)
    enc = Codec2VecEncoder(config=cfg.model, num_codebooks=4, codebook_size=16, codebook_vectors=torch.randn(4, 16, 8))
    weights = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    meta = {"step": 1, "config": config_to_dict(cfg), "codec": info.to_dict(), "frontend": frontend}
    return save_checkpoint(path, weights=weights, state={}, meta=meta)


def test_a_tampered_checkpoint_config_is_refused_before_the_model_is_built(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.features.sources import feature_source
    from codec2vec.model import Codec2VecEncoder
    from codec2vec.pretrain.checkpoint import CheckpointError, load_model

    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    load_model(ckpt)  # sound: loads
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["config"]["model"].update(dim=512, ffn_dim=2048, num_heads=8)  # within every bound, not the weights
    (ckpt / "meta.json").write_text(json.dumps(meta))
    built: list[int] = []
    init = Codec2VecEncoder.__init__

    def spy(self, **kw):  # every encoder really allocated (not on the meta device), by width
        init(self, **kw)
        if not self.mask_embedding.is_meta:
            built.append(int(kw["config"].dim))

    monkeypatch.setattr(Codec2VecEncoder, "__init__", spy)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(ckpt)
    assert 512 not in built  # refused from the weights' shapes, before the big model was allocated
    with pytest.raises(CheckpointError, match="do not fit"):
        feature_source("random", ckpt).prepare(torch.randn(4, 16, 8))  # the probe's random reference
    assert 512 not in built


# extract: audio baselines, rejects, a full disk, a foreign --out ---------------------------------------------


@pytest.mark.parametrize("frontend", ["waveform", "mel"])
def test_extract_with_an_audio_baseline_reads_the_audio(tmp_path: Path, short_clips: Path, frontend: str) -> None:
    import soundfile as sf

    from codec2vec.features.cache import FeatureDir
    from conftest import make_audio_store

    audio_store = make_audio_store(tmp_path / "corpus", n=4)

    ckpt = _tiny_checkpoint(tmp_path / "ckpt", frontend)
    assert main(["extract", str(ckpt), str(short_clips), "--out", str(tmp_path / "f"), "--json"]) == 0
    fd = FeatureDir.open(tmp_path / "f")
    assert len(fd) == 6
    for uid in fd.ids:
        samples = sf.info(short_clips / f"{uid}.wav").frames
        assert fd.get(uid).shape == (-(-samples // 320), 3, 128)  # 50 Hz grid, input + 2 layers, width 128
    assert main(["extract", str(ckpt), str(audio_store), "--out", str(tmp_path / "g"), "--layers", "2"]) == 0
    assert len(FeatureDir.open(tmp_path / "g")) == len(TokenStore.open(audio_store))  # the store's source files


def test_extract_exits_3_when_inputs_are_rejected(tmp_path: Path, lyra_dir: Path, capsys) -> None:
    from codec2vec.codecs import codec_info, get_codec

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.wav").write_text("not audio")
    info = codec_info(get_codec("lyra", path=str(lyra_dir), num_codebooks=4))
    for frontend in ("codec", "waveform"):
        ckpt = _tiny_checkpoint(tmp_path / f"ckpt-{frontend}", frontend, info)
        out = tmp_path / f"f-{frontend}"
        # A missing input is refused before anything is written (exit 2); an unreadable one is a reject (exit 3).
        argv = ["extract", str(ckpt), str(bad), str(tmp_path / "missing.wav"), "--out", str(out)]
        assert main(argv) == 2, frontend
        assert "missing.wav" in capsys.readouterr().err and not out.exists()
        assert main(["extract", str(ckpt), str(bad), "--out", str(out)]) == 3, frontend
        assert "notes.wav" in capsys.readouterr().err


def test_extract_on_a_full_disk_is_one_line_naming_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    import numpy as np

    store = make_store(tmp_path / "st", {"a": 30, "b": 40}).root
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")

    def short_write(*args, **kw):  # numpy's answer to a full disk: an OSError without errno
        raise OSError("1966080 requested and 0 written")

    monkeypatch.setattr(np, "save", short_write)
    assert main(["extract", str(ckpt), str(store), "--out", str(tmp_path / "f")]) == 2
    _one_line_error(capsys, "feats-000000.npy", "requested and 0 written")
    assert not [p for p in (tmp_path / "f").iterdir() if p.name.startswith("feats-")]


def test_extract_into_a_folder_with_a_foreign_meta_json_is_refused(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "st", {"a": 30}).root
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "f"
    out.mkdir()
    (out / "meta.json").write_text("title: my notes\n")
    assert main(["extract", str(ckpt), str(store), "--out", str(out)]) == 2
    _one_line_error(capsys, str(out / "meta.json"), "not a feature folder")
    assert (out / "meta.json").read_text() == "title: my notes\n"


# probe: rows without the task's field, epochs ---------------------------------------------------------------


def _task_folder(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_probe_rows_without_the_tasks_field_and_bad_epochs_are_one_line(tmp_path: Path, capsys) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    sid = _task_folder(tmp_path / "sid", [{"id": "a", "path": "a.wav", "label": "s1"}, {"id": "b", "path": "b.wav"}])
    assert main(["probe", "sid", "--ckpt", str(ckpt), "--data", str(sid), "--cache-dir", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "train.jsonl:2", "label")
    assert main(["probe", "pr", "--ckpt", str(ckpt), "--data", str(sid), "--cache-dir", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "train.jsonl", "phones")
    for epochs in ("0", "-1"):
        argv = ["probe", "sid", "--ckpt", str(ckpt), "--data", str(sid), "--max-epochs", epochs]
        assert main(argv) == 2
        _one_line_error(capsys, "--max-epochs")


# kmeans --source WAVEFORM_CKPT: bounded batches ----------------------------------------------------------


@pytest.mark.slow
def test_kmeans_on_a_waveform_checkpoint_runs_the_cnn_in_small_batches(tmp_path: Path, monkeypatch) -> None:
    from codec2vec import kmeans
    from codec2vec.features.sources import FeatureSource
    from conftest import make_audio_store

    store = make_audio_store(tmp_path / "corpus", n=12)  # 12 utterances of 40-160 frames: > 1024 in all
    ckpt = _tiny_checkpoint(tmp_path / "ckpt", "waveform")
    padded: list[int] = []
    forward = FeatureSource.__call__

    def spy(self, inputs, lengths):  # every batch the CNN runs on
        padded.append(len(lengths) * int(lengths.max()))
        return forward(self, inputs, lengths)

    monkeypatch.setattr(FeatureSource, "__call__", spy)
    opts = kmeans.KMeansOptions(source=f"{ckpt}:2", clusters=4, frames_per_cluster=200, n_init=1, name="w2")
    kmeans.run_kmeans(str(store), opts)
    assert padded and max(padded) <= 1024  # 20k padded frames peaked at 7.8 GB
    assert "w2" in TokenStore.open(store).label_names()


# one-line errors: a refused pickle, a checkpoint write on a full disk ---------------------------------------


@pytest.mark.slow  # imports transformers
def test_a_dac_folder_whose_pickle_is_refused_is_one_line(tmp_path: Path, capsys) -> None:
    import transformers

    folder = tmp_path / "dac"
    transformers.DacConfig(n_codebooks=2, codebook_size=16, codebook_dim=4).save_pretrained(folder)

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    clip = SPEECH / "lyra_sample1_16kHz.wav"
    argv = ["tokenize", str(clip), "--out", str(tmp_path / "st"), "--codec", "dac", "--codec-path", str(folder)]
    assert main(argv) == 2
    _one_line_error(capsys, "refused the weights", "safetensors")
    assert not (tmp_path / "st").exists()


def test_a_checkpoint_write_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.pretrain.checkpoint import CheckpointError, latest_checkpoint

    def full(*args, **kw):  # what torch.save says when the disk fills up under it
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 6912 vs 6806")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        _tiny_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000001")
    assert latest_checkpoint(tmp_path / "run") is None
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # nothing half-written left
