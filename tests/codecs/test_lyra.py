"""Lyra v2 backend on real speech: declared rates, fresh streaming state, codebook table, decode quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.codecs.lyra import LYRA_FILES, resolve_lyra_dir
from codec2vec.common.errors import Codec2VecError
from codec2vec.corpora.audio import load_audio


def _log_spec(x: np.ndarray) -> np.ndarray:
    from scipy.signal import stft

    _, _, s = stft(x, 16000, nperseg=512, noverlap=384)
    return np.log(np.abs(s) ** 2 + 1e-8)


def test_declared_metadata_matches_encode(lyra_codec, speech_dir: Path) -> None:
    wav = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    codes, frames = lyra_codec.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    assert codes.dtype == torch.long and codes.shape[1] == lyra_codec.num_codebooks == 46
    assert int(codes.max()) < lyra_codec.codebook_size == 16 and int(codes.min()) >= 0
    assert int(frames[0]) == codes.shape[2] == -(-len(wav) // 320)
    # frame rate: T frames span the audio's duration at the declared rate
    assert codes.shape[2] / lyra_codec.frame_rate == pytest.approx(len(wav) / lyra_codec.sample_rate, abs=1 / 50)


def test_each_utterance_starts_from_a_fresh_state(lyra_codec, speech_dir: Path) -> None:
    a = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    b = load_audio(speech_dir / "lyra_sample2_16kHz.wav", 16000)
    first = lyra_codec.encode_one(a)
    lyra_codec.encode_one(b)  # state from b must not leak into the next utterance
    assert np.array_equal(lyra_codec.encode_one(a), first)
    # and a padded batch gives each item its own codes
    batch = torch.zeros(2, max(len(a), len(b)))
    batch[0, : len(a)], batch[1, : len(b)] = torch.from_numpy(a), torch.from_numpy(b)
    codes, frames = lyra_codec.encode(batch, torch.tensor([len(a), len(b)]))
    assert np.array_equal(codes[0, :, : frames[0]].numpy(), first)
    assert np.array_equal(codes[1, :, : frames[1]].numpy(), lyra_codec.encode_one(b))


def test_levels_are_a_prefix(lyra_dir: Path, lyra_codec, speech_dir: Path) -> None:
    from codec2vec import get_codec

    wav = load_audio(speech_dir / "lyra_sample2_16kHz.wav", 16000)
    low = get_codec("lyra", path=str(lyra_dir), num_codebooks=16)
    assert low.num_codebooks == 16 and low.config() != lyra_codec.config()
    assert np.array_equal(low.encode_one(wav), lyra_codec.encode_one(wav)[:16])
    with pytest.raises(Codec2VecError, match="1..46"):
        get_codec("lyra", path=str(lyra_dir), num_codebooks=47)


def test_codebook_vectors_sum_to_the_quantizer_decode(lyra_codec, speech_dir: Path) -> None:
    table = lyra_codec.codebook_vectors()  # (K, V, D)
    assert tuple(table.shape) == (46, 16, 64)
    codes = lyra_codec.encode_one(load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000))  # (K, T)
    summed = table[torch.arange(46)[:, None], torch.from_numpy(codes)].sum(0)  # (T, 64)
    own = torch.from_numpy(lyra_codec.quantized_latent(codes))
    assert torch.allclose(summed, own, atol=1e-4, rtol=1e-4)


def test_decode_resembles_the_input(lyra_codec, speech_dir: Path) -> None:
    wav = load_audio(speech_dir / "lyra_sample1_16kHz.wav", 16000)
    codes, frames = lyra_codec.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    out, n = lyra_codec.decode(codes, frames)
    assert int(n[0]) == int(frames[0]) * 320
    y = out[0, : len(wav)].numpy()
    corr = np.corrcoef(_log_spec(wav).ravel(), _log_spec(y).ravel())[0, 1]
    assert corr >= 0.85


def test_weights_are_checksummed(tmp_path: Path, lyra_dir: Path) -> None:
    for name in LYRA_FILES:
        (tmp_path / name).write_bytes((lyra_dir / name).read_bytes())
    assert resolve_lyra_dir(tmp_path) == tmp_path
    blob = bytearray((tmp_path / "quantizer.tflite").read_bytes())
    blob[1000] ^= 1
    (tmp_path / "quantizer.tflite").write_bytes(bytes(blob))
    with pytest.raises(Codec2VecError, match="sha256"):
        resolve_lyra_dir(tmp_path)
    (tmp_path / "lyragan.tflite").unlink()
    with pytest.raises(Codec2VecError, match="lacks lyragan.tflite"):
        resolve_lyra_dir(tmp_path)
