"""The Codec2Vec encoder: padding invariance, codec-initialised embedding sum, quantizer dropout, presets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.model import Codec2VecEncoder, count_parameters, model_config
from codec2vec.pretrain.masking import MaskingConfig, span_mask

K, V = 4, 32


def _encoder(**overrides: object) -> Codec2VecEncoder:
    torch.manual_seed(0)
    cfg = model_config("tiny", **overrides)
    return Codec2VecEncoder(config=cfg, num_codebooks=K, codebook_size=V, codebook_vectors=torch.randn(K, V, 12))


def test_padded_batch_equals_each_item_alone() -> None:
    enc = _encoder().eval()
    lengths = torch.tensor([57, 23, 1, 40])
    codes = torch.randint(0, V, (4, K, 57))
    codes[1, :, 23:] = 7  # padding content must not matter
    mask = span_mask(lengths, 57, MaskingConfig(), torch.tensor([3, 4, 5, 6]))
    with torch.no_grad():
        layers, out_len = enc(codes, lengths, mask=mask)
        assert torch.equal(out_len, lengths)
        assert len(layers) == enc.config.num_layers + 1
        assert all(h.shape == (4, 57, enc.config.dim) for h in layers)
        for b, n in enumerate(lengths.tolist()):
            alone, _ = enc(codes[b : b + 1, :, :n], lengths[b : b + 1], mask=mask[b : b + 1, :n])
            for h, a in zip(layers, alone):
                torch.testing.assert_close(h[b, :n], a[0], atol=2e-5, rtol=1e-4)


def test_zero_and_one_frame_inputs() -> None:
    enc = _encoder().eval()
    with torch.no_grad():
        layers, _ = enc(torch.zeros(2, K, 0, dtype=torch.long), torch.tensor([0, 0]))
        assert layers[-1].shape == (2, 0, enc.config.dim)
        layers, _ = enc(torch.randint(0, V, (2, K, 1)), torch.tensor([1, 0]))
        assert layers[-1].shape == (2, 1, enc.config.dim) and torch.isfinite(layers[-1][0]).all()


def test_embedding_sum_is_codec_latent_and_quantizer_dropout_drops_levels() -> None:
    enc = _encoder()
    cb = torch.randn(K, V, 12)
    with torch.no_grad():
        enc.table.copy_(cb.reshape(K * V, 12))
    codes = torch.randint(0, V, (3, K, 9))
    latent = sum(cb[k][codes[:, k]] for k in range(K))  # (B, T, D): the codec's quantized latent
    torch.testing.assert_close(enc.embed(codes), latent)
    keep = torch.tensor([1, 3, 4])
    partial = enc.embed(codes, keep)
    for b, n in enumerate(keep.tolist()):
        torch.testing.assert_close(partial[b], sum(cb[k][codes[b, k]] for k in range(n)))


def test_masked_frames_do_not_see_their_codes() -> None:
    enc = _encoder().eval()
    codes = torch.randint(0, V, (1, K, 30))
    mask = torch.zeros(1, 30, dtype=torch.bool)
    mask[0, 10:20] = True
    other = codes.clone()
    other[:, :, 10:20] = (other[:, :, 10:20] + 1) % V
    with torch.no_grad():
        a, _ = enc(codes, torch.tensor([30]), mask=mask)
        b, _ = enc(other, torch.tensor([30]), mask=mask)
        c, _ = enc(other, torch.tensor([30]))
    torch.testing.assert_close(a[-1], b[-1])
    assert not torch.allclose(a[-1], c[-1])


def test_frozen_tables_and_from_state_dict() -> None:
    enc = _encoder(freeze_embeddings=True)
    assert not enc.table.requires_grad and enc.proj.weight.requires_grad
    again = Codec2VecEncoder.from_state_dict(
        {f"encoder.{k}": v for k, v in enc.state_dict().items()},
        config=enc.config,
        num_codebooks=K,
        codebook_size=V,
        prefix="encoder.",
    )
    assert again.codebook_dim == 12 and torch.equal(again.table, enc.table)


def test_backward_reaches_tables() -> None:
    enc = _encoder().train()
    layers, _ = enc(torch.randint(0, V, (2, K, 20)), torch.tensor([20, 15]), keep_levels=torch.tensor([2, 4]))
    layers[-1].sum().backward()
    assert enc.table.grad is not None and enc.table.grad.abs().sum() > 0


def test_base_preset_has_hubert_base_size() -> None:
    enc = Codec2VecEncoder(
        config=model_config("base"), num_codebooks=12, codebook_size=1024, codebook_vectors=torch.zeros(12, 1024, 1024)
    )  # DAC-16k: 12 x 1024, latent 1024
    backbone = count_parameters(enc) - enc.table.numel()
    assert 88e6 < backbone < 97e6  # HuBERT Base without its waveform CNN (~90M + positional conv)
    assert 95e6 < count_parameters(enc) < 110e6  # + the 12 x 1024 x 1024 codec-initialised tables
    assert model_config("large").num_layers == 24
    with pytest.raises(ValueError):
        model_config("tiny", no_such_field=1)


def _lyra_dir() -> Path | None:
    for p in (os.environ.get("CODEC2VEC_LYRA_DIR"), "/work/shared/codecs/lyra-v2"):
        if p and (Path(p) / "quantizer.tflite").is_file():
            return Path(p)
    return None


@pytest.mark.skipif(_lyra_dir() is None, reason="Lyra v2 weights not available")
def test_codebook_initialised_sum_equals_lyra_quantized_latent() -> None:
    import soundfile as sf

    from codec2vec.codecs import get_codec

    codec = get_codec("lyra", path=str(_lyra_dir()), num_codebooks=12)
    wav, sr = sf.read("/work/shared/speech/lyra_sample1_16kHz.wav", dtype="float32", frames=16000)
    assert sr == 16000
    codes, _ = codec.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))  # (1, 12, 50)
    enc = Codec2VecEncoder(
        config=model_config("tiny"), num_codebooks=12, codebook_size=16, codebook_vectors=codec.codebook_vectors()[:12]
    )
    with torch.no_grad():
        ours = enc.embed(codes)[0].numpy()  # (T, 64)
    theirs = codec.quantized_latent(codes[0].numpy())  # (T, 64)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_bert_init_is_the_default_and_default_keeps_pytorch() -> None:
    from codec2vec.common.errors import ConfigError

    bert = _encoder()
    assert bert.config.init == "bert"
    linears = [m for m in bert.transformer.layers.modules() if isinstance(m, torch.nn.Linear)]
    w = torch.cat([m.weight.detach().flatten() for m in linears])
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in linears)
    plain = _encoder(init="default")
    fc1 = plain.transformer.layers[0].fc1  # PyTorch: U(-1/sqrt(in), 1/sqrt(in)), std 1/sqrt(3 * 128) ~ 0.051
    assert float(fc1.weight.std()) > 0.04 and float(fc1.bias.abs().max()) > 0
    with pytest.raises(ConfigError, match="model.init"):
        _encoder(init="xavier")
