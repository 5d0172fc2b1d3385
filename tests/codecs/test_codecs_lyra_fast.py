"""Lyra's fast tokenization path (many frames per TFLite call) gives exactly the codes of the shipped graphs run
one 20 ms frame per call (`LyraCodec.encode_reference`), on real speech: whole utterances, padded batches,
streamed blocks, lower levels; and the graph rewrite touches only the RESHAPE targets it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.codecs.lyra import ENCODER_CHUNK, ENCODER_RESHAPES, QUANTIZER_CHUNK, batch_agnostic
from codec2vec.common.errors import Codec2VecError
from codec2vec.corpora.audio import load_audio


@pytest.fixture(scope="module")
def speech(speech_dir: Path) -> dict[str, np.ndarray]:
    """Every shared real recording at 16 kHz (the 8 and 48 kHz ones resampled), and all of them end to end
    (about 13 s: several encoder and quantizer chunks, and a last chunk of another size)."""
    wavs = {f.stem: load_audio(f, 16000) for f in sorted(speech_dir.glob("*.wav"))}
    wavs["all"] = np.concatenate(list(wavs.values()))
    return wavs


def test_codes_equal_the_one_frame_path_on_real_speech(lyra_codec, speech: dict[str, np.ndarray]) -> None:
    frames = 0
    for name, wav in speech.items():
        ref = lyra_codec.encode_reference(wav)  # (46, T)
        assert ref.shape == (46, -(-len(wav) // 320))
        assert np.array_equal(lyra_codec.encode_one(wav), ref), name
        frames += ref.shape[1]
    assert frames > 2 * (ENCODER_CHUNK + QUANTIZER_CHUNK)
    for cut in (1, 319, 321, 320 * ENCODER_CHUNK - 5, 320 * (ENCODER_CHUNK + 1) + 7):  # odd lengths, chunk edges
        wav = speech["all"][:cut]
        assert np.array_equal(lyra_codec.encode_one(wav), lyra_codec.encode_reference(wav)), cut


def test_padded_batch_equals_the_one_frame_path(lyra_codec, speech: dict[str, np.ndarray]) -> None:
    wavs = list(speech.values())
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.zeros(len(wavs), int(lengths.max()))  # (B, S)
    for b, w in enumerate(wavs):
        batch[b, : len(w)] = torch.from_numpy(w)
    codes, frames = lyra_codec.encode(batch, lengths)  # (B, 46, T), (B,)
    for b, w in enumerate(wavs):
        assert np.array_equal(codes[b, :, : int(frames[b])].numpy(), lyra_codec.encode_reference(w)), b
        assert not codes[b, :, int(frames[b]) :].any()  # padding frames stay 0


def test_streamed_blocks_equal_the_one_frame_path(lyra_codec, speech: dict[str, np.ndarray]) -> None:
    wav = speech["all"]
    ref = lyra_codec.encode_reference(wav)
    for block in (997, 320 * ENCODER_CHUNK, 320 * ENCODER_CHUNK + 1, 48_000):
        streamed = lyra_codec.encode_stream(wav[i : i + block] for i in range(0, len(wav), block))
        assert streamed.dtype == np.uint16 and np.array_equal(streamed, ref), block


def test_lower_levels_are_the_prefix(lyra_dir: Path, speech: dict[str, np.ndarray]) -> None:
    from codec2vec import get_codec

    low = get_codec("lyra", path=str(lyra_dir), num_codebooks=16)
    wav = speech["lyra_sample2_16kHz"]
    assert np.array_equal(low.encode_one(wav), low.encode_reference(wav))
    assert low.encode_one(wav).shape[0] == 16


def test_the_rewrite_changes_only_the_reshape_targets(lyra_dir: Path) -> None:
    model = (lyra_dir / "soundstream_encoder.tflite").read_bytes()
    fast = batch_agnostic(model, ENCODER_RESHAPES)
    changed = np.flatnonzero(np.frombuffer(model, np.uint8) != np.frombuffer(fast, np.uint8))
    assert len(fast) == len(model) and 0 < len(changed) <= 8  # 320 -> -1 and 1 -> -1: one int32 each
    with pytest.raises(Codec2VecError, match="no RESHAPE"):
        batch_agnostic(model, {(7, 7, 7): (-1, 7, 7)})


def test_codebook_table_is_the_quantizer_decode(lyra_codec) -> None:
    """`codebook_vectors` (plain calls on the quantizer's first subgraph) equals its `decode` signature."""
    table = lyra_codec.codebook_vectors().numpy()  # (46, 16, 64)
    idx = np.full((46, 1, 1), -1, dtype=np.int32)
    for k in range(0, 46, 9):
        for v in (0, 7, 15):
            idx[:] = -1
            idx[k, 0, 0] = v
            want = lyra_codec._q_decode(encoding_indices=idx)["output_0"].reshape(-1)
            assert np.array_equal(table[k, v], want), (k, v)
