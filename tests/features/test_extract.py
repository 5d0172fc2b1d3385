"""Features: `extract` is padding invariant and deterministic; `Upstream` gives ceil(samples / 320) frames for
real recordings; the s3prl expert's hidden states equal `extract`; `codec2vec extract` is resumable."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import codec2vec
from codec2vec.features.upstream import Upstream, extract
from codec2vec.model import Codec2VecEncoder, model_config

K, V = 6, 16


def _encoder(seed: int = 0) -> Codec2VecEncoder:
    torch.manual_seed(seed)
    cfg = model_config("tiny", num_layers=2, dim=32, ffn_dim=64, num_heads=4, conv_pos_kernel=8, conv_pos_groups=4)
    return Codec2VecEncoder(config=cfg, num_codebooks=K, codebook_size=V, codebook_vectors=torch.randn(K, V, 12))


def test_batched_padded_extraction_equals_one_by_one() -> None:
    model = _encoder()
    model.train()  # extract must switch dropout off by itself
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([37, 5, 1, 20])
    codes = torch.randint(0, V, (4, K, 37), generator=g)
    codes[1, :, 5:] = 3  # padding content must not matter
    layers, out_len = extract(model, codes, lengths)
    assert len(layers) == 3 and torch.equal(out_len, lengths)
    assert all(h.shape == (4, 37, 32) for h in layers)
    for b, n in enumerate(lengths.tolist()):
        alone, _ = extract(model, codes[b : b + 1, :, :n], lengths[b : b + 1])
        for h_batch, h_alone in zip(layers, alone):
            torch.testing.assert_close(h_batch[b, :n], h_alone[0], atol=1e-5, rtol=1e-4)
            assert h_batch[b, n:].abs().sum() == 0  # padding frames are zero


def test_extraction_is_deterministic_and_takes_zero_frames() -> None:
    model = _encoder()
    codes = torch.randint(0, V, (2, K, 30))
    a, _ = extract(model, codes, torch.tensor([30, 12]))
    b, _ = extract(model, codes, torch.tensor([30, 12]))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    empty, n = extract(model, torch.zeros(1, K, 0, dtype=torch.long), torch.tensor([0]))
    assert empty[0].shape == (1, 0, 32) and n.tolist() == [0]


def test_codec2vec_extract_is_the_upstream_function() -> None:
    model = _encoder()
    codes = torch.randint(0, V, (1, K, 9))
    assert codec2vec.extract is extract and not isinstance(codec2vec.features.upstream, type(codec2vec.extract))
    a, _ = codec2vec.extract(model, codes, torch.tensor([9]))
    b, _ = extract(model, codes, torch.tensor([9]))
    assert torch.equal(a[-1], b[-1])
    assert (
        codec2vec.extract is extract
        and codec2vec.features.upstream.Upstream is Upstream
        and codec2vec.load_model is codec2vec.features.upstream.load_model
    )


@pytest.fixture(scope="module")
def upstream(tiny_run: dict) -> Upstream:
    return Upstream.from_checkpoint(tiny_run["run"])


def _speech(speech_dir: Path) -> list[tuple[str, torch.Tensor]]:
    from codec2vec.corpora.audio import load_audio

    names = sorted(p.name for p in speech_dir.glob("*.wav"))
    return [(n, torch.from_numpy(load_audio(speech_dir / n, 16000))) for n in names]


@pytest.mark.slow
def test_upstream_frames_match_the_codec_hop_for_real_recordings(upstream: Upstream, speech_dir: Path) -> None:
    wavs = _speech(speech_dir)
    assert len(wavs) >= 4
    layers, lengths = upstream([w for _, w in wavs])
    assert len(layers) == upstream.num_layers == 5 and upstream.downsample_rate == 320
    for (name, w), n in zip(wavs, lengths.tolist()):
        assert abs(n - math.ceil(len(w) / 320)) <= 1, name
    assert layers[-1].shape == (len(wavs), max(lengths.tolist()), upstream.dim)


@pytest.mark.slow
def test_s3prl_expert_hidden_states_equal_extract(tiny_run: dict, upstream: Upstream, speech_dir: Path) -> None:
    from codec2vec.features.s3prl import UpstreamExpert

    wavs = [w[: 16000 + 160 * i] for i, (_, w) in enumerate(_speech(speech_dir)[:3])]
    expert = UpstreamExpert(str(tiny_run["run"]))
    out = expert(wavs)
    assert expert.get_downsample_rates("hidden_states") == 320
    codes, frames = upstream.encode(wavs)
    model, _ = codec2vec.load_model(tiny_run["run"])
    want, _ = extract(model, codes, frames)
    assert len(out["hidden_states"]) == len(want)
    for got, ref in zip(out["hidden_states"], want):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["last_hidden_state"], want[-1])


@pytest.mark.slow
def test_extract_cli_writes_memory_mapped_features_and_resumes(tiny_run: dict, tmp_path: Path) -> None:
    from codec2vec.features.cache import FeatureDir
    from codec2vec.store import TokenStore

    out = tmp_path / "feats"
    base = [sys.executable, "-m", "codec2vec", "extract", str(tiny_run["run"]), str(tiny_run["store"])]
    cmd = base + ["--out", str(out), "--layers", "0", "4", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    s1 = json.loads(first.stdout)
    store = TokenStore.open(tiny_run["store"])
    assert s1["extracted"] == len(store) and s1["layers"] == [0, 4]
    second = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout)
    assert second["extracted"] == 0 and second["skipped_already_done"] == len(store)
    fd = FeatureDir.open(out)
    assert fd.layers == [0, 4] and len(fd) == len(store)
    uid = store.ids()[0]
    model, _ = codec2vec.load_model(tiny_run["run"])
    codes = store[uid][None]  # (1, K, T)
    want, _ = extract(model, codes, torch.tensor([codes.shape[-1]]))
    got = fd.get(uid)  # (T, 2, D) float16
    assert got.shape == (codes.shape[-1], 2, 128)
    np.testing.assert_allclose(got[:, 1].astype(np.float32), want[4][0].numpy(), atol=2e-2, rtol=1e-2)
    bad = subprocess.run(base + ["--out", str(tmp_path / "x"), "--layers", "9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--layers [9]" in bad.stderr


@pytest.mark.slow
def test_extract_cli_on_audio_files_tokenizes_them_once(tiny_run: dict, speech_dir: Path, tmp_path: Path) -> None:
    from codec2vec.corpora.audio import load_audio
    from codec2vec.features.cache import FeatureDir

    out = tmp_path / "feats"
    cmd = [sys.executable, "-m", "codec2vec", "extract", str(tiny_run["run"]), str(speech_dir), "--out", str(out)]
    first = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["extracted"] == 4
    fd = FeatureDir.open(out)
    for p in speech_dir.glob("*.wav"):
        uid = p.stem
        assert abs(fd.num_frames(uid) - math.ceil(len(load_audio(p, 16000)) / 320)) <= 1
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 new, 4 already there" in again.stderr
