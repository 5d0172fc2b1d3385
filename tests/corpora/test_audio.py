"""Audio input: formats, mono mixing, resampling, truncation, and corpus scanning."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.common.errors import AudioError
from codec2vec.corpora.audio import load_audio, scan_sources
from codec2vec.tokenize import TokenizeOptions, tokenize


def test_resampling_and_mono(tmp_path: Path, speech_dir: Path) -> None:
    ref = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    from48 = load_audio(speech_dir / "lyra_sample1_48kHz.wav", 16000)
    assert abs(len(from48) - len(ref)) <= 1
    n = min(len(ref), len(from48))
    assert np.corrcoef(ref[:n], from48[:n])[0, 1] > 0.95  # the same utterance after anti-aliased resampling
    sf.write(tmp_path / "st.wav", np.stack([ref, np.zeros_like(ref)], axis=1), 16000)
    assert np.allclose(load_audio(tmp_path / "st.wav"), ref / 2, atol=1e-4)  # channels are averaged


def test_truncated_compressed_audio_is_refused(tmp_path: Path) -> None:
    x = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "full.mp3", x, 16000)
    blob = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(blob[: len(blob) // 3])
    assert len(load_audio(tmp_path / "full.mp3")) == 48000
    with pytest.raises(AudioError, match="cut.mp3: truncated"):
        load_audio(tmp_path / "cut.mp3")


def test_scan_ids_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    sf.write(tmp_path / "a" / "b" / "x.flac", np.zeros(800, dtype=np.float32), 16000)
    sf.write(tmp_path / "a" / "y.wav", np.zeros(800, dtype=np.float32), 16000)
    (tmp_path / "a" / "notes.txt").write_text("not a manifest of this folder")  # only audio files are scanned
    assert [i.id for i in scan_sources([tmp_path / "a"])] == ["y", "b/x"]  # a folder, then its subfolders
    (tmp_path / "m.txt").write_text("a/y.wav\n")
    (tmp_path / "n.txt").write_text("a/b/x.flac\n")
    sf.write(tmp_path / "y.wav", np.zeros(800, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="duplicate utterance id 'y'"):
        scan_sources([tmp_path / "a" / "y.wav", tmp_path / "y.wav"])
    assert [i.id for i in scan_sources([tmp_path / "m.txt", tmp_path / "n.txt"])] == ["a/y", "a/b/x"]


def test_folder_scans_survive_symlink_loops(tmp_path: Path, short_clips: Path) -> None:
    root = tmp_path / "corpus"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(short_clips / "c0.wav", root / "a" / "b" / "x.wav")
    shutil.copy(short_clips / "c1.wav", root / "y.wav")
    os.symlink("..", root / "a" / "up")  # a/up/a/up/a/... forever
    os.symlink("../..", root / "a" / "b" / "top")  # a second loop: never finished before
    os.symlink("y.wav", root / "y_again.wav")  # the same file under two names
    items = scan_sources([root])
    assert sorted(it.id for it in items) == ["a/b/x", "y"]


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
def test_wav_headers_out_of_bounds_are_refused_before_reading(
    tmp_path: Path, rate: int, channels: int, reason: str
) -> None:
    path = tmp_path / "tiny.wav"
    n = 10_000 // (2 * channels) * 2 * channels
    path.write_bytes(_wav_header(rate, channels, n) + bytes(n))  # 10 KB claiming e.g. 1 Hz
    with pytest.raises(AudioError, match=reason):
        load_audio(path, 16000)


def test_max_seconds_is_enforced_and_blocked_reads_equal_one_read(
    tmp_path: Path, speech_dir: Path, monkeypatch
) -> None:
    import codec2vec.corpora.audio as audio

    src = speech_dir / "lyra_sample1_16kHz.wav"
    with pytest.raises(AudioError, match="more than the"):
        load_audio(src, 16000, max_seconds=0.5)
    whole = load_audio(src, 24000)
    monkeypatch.setattr(audio, "STREAM_SECONDS", 0.25)  # force the blocked path on a short file
    blocked = load_audio(src, 24000)
    assert abs(blocked.shape[0] - whole.shape[0]) <= 1
    n = min(blocked.shape[0], whole.shape[0])
    assert np.abs(blocked[:n] - whole[:n]).max() < 1e-3  # the same audio, read in blocks


def test_a_link_to_dev_zero_is_rejected_as_not_a_regular_file(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.common.errors import AudioError
    from codec2vec.corpora.audio import load_audio

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.wav").write_bytes((short_clips / "c1.wav").read_bytes())
    (src / "zero.wav").symlink_to("/dev/zero")
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(src / "zero.wav")
    summary = tokenize([str(src)], tmp_path / "st", TokenizeOptions(codec="lyra"), progress=False)
    assert summary["stored"] == 1 and summary["rejected"] == 1
    assert "not a regular file" in summary["rejects"][0]["reason"]
