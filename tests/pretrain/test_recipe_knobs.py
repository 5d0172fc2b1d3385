"""Recipe knobs of the codec model: `model.embed_norm` (what normalises the summed codebook embeddings) and
`model.quantizer_dropout_schedule` (a quantizer-dropout probability that decays to 0 over `train.steps`)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.frontends import CodecFrontend
from codec2vec.model import Codec2VecEncoder, ModelConfig, model_config
from codec2vec.pretrain.config import config_from_dict, config_to_dict, load_config
from codec2vec.pretrain.data import Batch
from codec2vec.pretrain.masking import Masker, MaskingConfig

K, V, DC = 6, 16, 8


def _frontend(mode: str) -> CodecFrontend:
    torch.manual_seed(0)
    cb = torch.randn(K, V, DC) * 3.0
    return CodecFrontend(dim=12, num_codebooks=K, codebook_size=V, codebook_vectors=cb, embed_norm=mode)


def test_embed_norm_modes_normalise_the_summed_embeddings() -> None:
    codes = torch.randint(0, V, (3, K, 7), generator=torch.Generator().manual_seed(1))
    keep = torch.tensor([K, 2, 1])
    fronts = {m: _frontend(m) for m in ("layernorm", "scale", "none")}
    for f in fronts.values():  # one projection for all, so only the normalisation differs
        f.proj.load_state_dict(fronts["layernorm"].proj.state_dict())
    s = fronts["none"].embed(codes, keep)  # (B, T, DC)
    ln = torch.nn.functional.layer_norm(s, (DC,))
    with torch.no_grad():
        out = {m: f(codes, None, keep) for m, f in fronts.items()}
        proj = fronts["none"].proj
        torch.testing.assert_close(out["none"], proj(s))
        torch.testing.assert_close(out["layernorm"], proj(ln))
        torch.testing.assert_close(out["scale"], proj(s / keep.float().sqrt()[:, None, None]))
        torch.testing.assert_close(fronts["scale"](codes), proj(fronts["none"].embed(codes) / math.sqrt(K)))
    assert not torch.allclose(out["scale"], out["layernorm"]) and not torch.allclose(out["scale"], out["none"])
    assert [n for n, _ in fronts["layernorm"].named_parameters()] == [
        "table",
        "embed_norm.weight",
        "embed_norm.bias",
        "proj.weight",
        "proj.bias",
    ]
    assert "embed_norm.weight" not in dict(fronts["scale"].named_parameters())


def test_embed_norm_and_schedule_are_checked() -> None:
    assert load_config(None).model.embed_norm == "layernorm"
    assert load_config(None, ["model.embed_norm=scale"]).model.embed_norm == "scale"
    for bad, key in [
        (["model.embed_norm=batchnorm"], "model.embed_norm"),
        (["model.embed_norm=scale", "model.frontend=melhubert", "targets=online"], "model.embed_norm"),
        (["model.quantizer_dropout_schedule=cosine"], "model.quantizer_dropout_schedule"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(None, bad)


def test_a_config_without_the_knobs_loads_as_before() -> None:
    """Checkpoints written before the knobs existed hold a config without them and a LayerNorm's weights."""
    d = config_to_dict(load_config(None))
    for key in ("embed_norm", "quantizer_dropout_schedule"):
        del d["model"][key]
    cfg = config_from_dict(d)
    assert (cfg.model.embed_norm, cfg.model.quantizer_dropout_schedule) == ("layernorm", "constant")
    mc = model_config("tiny", num_layers=1)
    old = Codec2VecEncoder(config=mc, num_codebooks=K, codebook_size=V, codebook_vectors=torch.randn(K, V, DC))
    state = old.state_dict()
    assert "frontend.embed_norm.weight" in state
    saved = {k: v for k, v in dataclasses.asdict(mc).items() if k not in ("embed_norm", "quantizer_dropout_schedule")}
    new = Codec2VecEncoder.from_state_dict(state, config=ModelConfig(**saved), num_codebooks=K, codebook_size=V)
    codes = torch.randint(0, V, (1, K, 5))
    torch.testing.assert_close(new.eval().features(codes), old.eval().features(codes))
    with pytest.raises(RuntimeError, match="embed_norm"):  # another choice does not silently drop the weights
        Codec2VecEncoder.check_shapes({k: tuple(t.shape) for k, t in state.items()},
                                      config=model_config("tiny", num_layers=1, embed_norm="scale"),
                                      num_codebooks=K, codebook_size=V)  # fmt: skip


SEEDS = torch.arange(4000, dtype=torch.long) * 7919 + 13  # deterministic, many utterances


def _dropped(masker: Masker, step: int) -> float:
    keep = masker.keep_levels(SEEDS, step)
    assert keep is not None
    # a dropped row keeps n ~ U{1..K}; n = K is indistinguishable from no drop, so compare with the expectation
    return float((keep < K).float().mean()) / ((K - 1) / K)


def test_decay_schedule_lowers_the_dropout_rate_linearly() -> None:
    decay = Masker(MaskingConfig(), num_levels=K, dropout=0.6, schedule="decay", total_steps=100)
    const = Masker(MaskingConfig(), num_levels=K, dropout=0.6)
    for step, want in [(0, 0.6), (25, 0.45), (50, 0.3), (90, 0.06), (100, 0.0), (150, 0.0)]:
        assert decay.rate(step) == pytest.approx(want)
        assert _dropped(decay, step) == pytest.approx(want, abs=0.035)
        assert _dropped(const, step) == pytest.approx(0.6, abs=0.035)
    # the same step draws the same levels; a row dropped at a later step was dropped at every earlier one
    torch.testing.assert_close(decay.keep_levels(SEEDS, 40), decay.keep_levels(SEEDS, 40))
    late, early = decay.keep_levels(SEEDS, 70), decay.keep_levels(SEEDS, 10)
    assert late is not None and early is not None
    assert bool(((late < K) <= (early < K)).all())


def test_loader_masks_leave_decaying_levels_to_the_step() -> None:
    """Loader processes draw masks without the step; `Pretrainer.prepare(batch, step)` draws the levels with it."""
    from codec2vec.pretrain.pretrainer import Pretrainer

    mc = model_config("tiny", num_layers=1, quantizer_dropout=0.8, quantizer_dropout_schedule="decay")
    enc = Codec2VecEncoder(config=mc, num_codebooks=K, codebook_size=V, codebook_vectors=torch.randn(K, V, DC))
    model = Pretrainer(encoder=enc, masking=MaskingConfig(), targets=[])
    model.total_steps = 10
    masker = model.masker()
    lengths, seeds = torch.full((64,), 30), SEEDS[:64]
    batch = Batch(codes=torch.zeros(64, K, 30, dtype=torch.long), lengths=lengths, seeds=seeds)
    worker = batch.with_masks(masker)  # what a loader process does
    assert worker.mask is not None and worker.keep is None
    for step in (0, 5, 9):
        ready = model.prepare(worker, step)
        torch.testing.assert_close(ready.keep, masker.keep_levels(seeds, step))
        torch.testing.assert_close(ready.mask, worker.mask)
    assert bool((model.prepare(worker, 10).keep == K).all())  # the schedule has reached 0
    assert not torch.equal(model.prepare(worker, 0).keep, model.prepare(worker, 9).keep)
