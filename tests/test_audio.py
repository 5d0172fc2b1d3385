"""Audio input: formats, mono mixing, resampling, truncation, and corpus scanning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.audio import load_audio, scan_sources
from codec2vec.errors import AudioError


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
