"""`extract` inputs and outputs: audio baselines read the audio, rejects exit 3, a full disk and a foreign
`--out` are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec2vec.cli import main
from codec2vec.store import TokenStore
from conftest import make_store, one_line_error, tiny_checkpoint


@pytest.mark.parametrize("frontend", ["waveform", "mel"])
def test_extract_with_an_audio_baseline_reads_the_audio(tmp_path: Path, short_clips: Path, frontend: str) -> None:
    import soundfile as sf

    from codec2vec.features.cache import FeatureDir
    from conftest import make_audio_store

    audio_store = make_audio_store(tmp_path / "corpus", n=4)

    ckpt = tiny_checkpoint(tmp_path / "ckpt", frontend)
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
        ckpt = tiny_checkpoint(tmp_path / f"ckpt-{frontend}", frontend, info)
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
    ckpt = tiny_checkpoint(tmp_path / "ckpt")

    def short_write(*args, **kw):  # numpy's answer to a full disk: an OSError without errno
        raise OSError("1966080 requested and 0 written")

    monkeypatch.setattr(np, "save", short_write)
    assert main(["extract", str(ckpt), str(store), "--out", str(tmp_path / "f")]) == 2
    one_line_error(capsys, "feats-000000.npy", "requested and 0 written")
    assert not [p for p in (tmp_path / "f").iterdir() if p.name.startswith("feats-")]


def test_extract_into_a_folder_with_a_foreign_meta_json_is_refused(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "st", {"a": 30}).root
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "f"
    out.mkdir()
    (out / "meta.json").write_text("title: my notes\n")
    assert main(["extract", str(ckpt), str(store), "--out", str(out)]) == 2
    one_line_error(capsys, str(out / "meta.json"), "not a feature folder")
    assert (out / "meta.json").read_text() == "title: my notes\n"
