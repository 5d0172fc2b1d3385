"""The online (DinoSR) target against its reference: the FFN-output target point (checked against a layer
computed by hand), fp32 assignments under bf16 autocast, a frozen teacher that reads a frozen front end, the
collapse figures (codewords in use, perplexities, one warning) and optional re-seeding of dead codewords."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from codec2vec.common.errors import ConfigError
from codec2vec.model import padding_mask
from codec2vec.pretrain.targets.online import (
    RESEED_AFTER,
    OnlineTarget,
    masked_instance_norm,
    nearest_codeword,
    perplexity,
)
from conftest import cycle_batch, tiny_pretrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _layer_by_hand(layer: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A post-LN layer written out (eval mode): softmax attention over valid keys, then FFN; -> (FFN out, layer out)."""
    b, t, d = x.shape
    h = layer.num_heads
    q, k, v = layer.qkv(x).view(b, t, 3, h, d // h).unbind(2)  # each (B, T, H, D/H)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // h)  # (B, H, T, T)
    scores = scores.masked_fill(padding_mask(lengths, t)[:, None, None, :], float("-inf"))
    a = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, t, d)  # (B, T, D)
    x = F.layer_norm(x + layer.out(a), (d,), layer.attn_norm.weight, layer.attn_norm.bias)
    ffn = F.linear(F.gelu(F.linear(x, layer.fc1.weight, layer.fc1.bias)), layer.fc2.weight, layer.fc2.bias)
    out = F.layer_norm(x + ffn, (d,), layer.ffn_norm.weight, layer.ffn_norm.bias)
    return ffn, out


@torch.no_grad()
def test_default_target_is_the_ffn_output_before_residual_and_layernorm() -> None:
    pt = tiny_pretrainer(["online"], online=dict(top_k=1))
    (target,) = pt.targets
    assert target.target_point == "ffn"
    pt.eval()
    batch = cycle_batch(b=3, t=48)
    teacher = target.teacher
    x = pt.encoder.features(batch.codes)  # (B, T, D)
    layers = teacher(x, batch.lengths)
    ffn, out = _layer_by_hand(teacher.layers[-1], layers[-2], batch.lengths)
    valid = ~padding_mask(batch.lengths, x.shape[1])
    torch.testing.assert_close(out[valid], layers[-1][valid], atol=1e-5, rtol=1e-4)  # the hand layer is right
    (got,) = target.teacher_targets(batch.codes, batch.lengths)
    torch.testing.assert_close(got, masked_instance_norm(ffn, batch.lengths), atol=1e-4, rtol=1e-4)
    # the old point (layer output after LayerNorm) stays available and is a different target
    pt_layer = tiny_pretrainer(["online"], online=dict(top_k=1, target_point="layer"))
    (old,) = pt_layer.targets[0].teacher_targets(batch.codes, batch.lengths)
    torch.testing.assert_close(old, masked_instance_norm(out, batch.lengths), atol=1e-4, rtol=1e-4)
    assert (old - got)[valid].abs().mean() > 0.1
    with pytest.raises(ConfigError, match="online.target_point"):
        tiny_pretrainer(["online"], online=dict(target_point="residual"))


def test_assignments_stay_fp32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4000, 64, generator=g)
    codebook = y[:256] + 0.05 * torch.randn(256, 64, generator=g)  # near ties: bf16 distances would flip some
    ref = torch.cdist(y.double(), codebook.double()).argmin(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nearest_codeword(y, codebook)
        naive = ((y * y).sum(-1, keepdim=True) - 2 * y @ codebook.t() + (codebook * codebook).sum(-1)).argmin(-1)
        normed = masked_instance_norm(y[None], torch.tensor([4000]))
    assert normed.dtype == torch.float32
    assert (naive != ref).any()  # the check is sensitive: bf16 matmuls do flip assignments here
    assert torch.equal(got, ref)
    # the whole target under autocast: labels are the fp32 nearest codewords of its (fp32) targets
    pt = tiny_pretrainer(["online"], online=dict(top_k=2, codewords=16))
    (target,) = pt.targets
    pt.train()
    batch = cycle_batch(b=4, t=60)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        labels = target.labels(batch, [], None)
        targets = target.teacher_targets(batch.codes, batch.lengths)
    valid = ~padding_mask(batch.lengths, 60)
    for i, (lab, y) in enumerate(zip(labels, targets)):
        assert y.dtype == torch.float32
        exact = torch.cdist(y[valid].double(), target.codebooks[i].double()).argmin(-1)
        assert torch.equal(lab[valid], exact)


def test_after_the_freeze_step_neither_the_teacher_nor_its_input_changes() -> None:
    pt = tiny_pretrainer(["online"], online=dict(top_k=2, ema_start=0.5, ema_end=0.5, freeze_teacher_step=3))
    (target,) = pt.targets
    opt = torch.optim.AdamW(pt.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    probe = cycle_batch(b=3, seed=7)

    def train_step(step: int) -> None:
        pt.train()
        out = pt(cycle_batch(b=4, seed=step))
        opt.zero_grad()
        out.loss().backward()
        opt.step()
        pt.update(step)

    train_step(1)
    before = target.teacher_targets(probe.codes, probe.lengths)
    train_step(2)  # before the freeze the teacher (and what it reads) moves
    assert not torch.equal(before[0], target.teacher_targets(probe.codes, probe.lengths)[0])
    train_step(3)  # frozen from here
    assert bool(target.frozen)
    frozen_targets = target.teacher_targets(probe.codes, probe.lengths)
    teacher = {k: v.clone() for k, v in target.teacher.state_dict().items()}
    front = {k: v.clone() for k, v in target.frontend.state_dict().items()}
    table = pt.encoder.table.detach().clone()
    for step in (4, 5, 6):
        train_step(step)
    assert not torch.equal(table, pt.encoder.table)  # the student's front end keeps training
    assert all(torch.equal(v, target.teacher.state_dict()[k]) for k, v in teacher.items())
    assert all(torch.equal(v, target.frontend.state_dict()[k]) for k, v in front.items())
    for a, b in zip(frozen_targets, target.teacher_targets(probe.codes, probe.lengths)):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in target.frontend.parameters())
    # the frozen copy travels with the state dict: a fresh model loaded from it reads the same frozen input
    fresh = tiny_pretrainer(["online"], online=dict(top_k=2, freeze_teacher_step=3))
    fresh.load_state_dict(pt.state_dict())
    for a, b in zip(frozen_targets, fresh.targets[0].teacher_targets(probe.codes, probe.lengths)):
        assert torch.equal(a, b)


def _window(target: OnlineTarget) -> tuple[dict[str, float], str | None]:
    return target.window_metrics(lambda t: t)


def test_collapse_figures_count_codewords_and_perplexities_and_warn_once() -> None:
    pt = tiny_pretrainer(["online"], online=dict(top_k=2, codewords=8, warn_used=0.5))
    (target,) = pt.targets
    pt.train()
    batch = cycle_batch(b=4, t=60)
    mask, _ = pt.masks(batch)
    labels = [y[mask] for y in target.labels(batch, [], mask)]
    logits = target.logits(torch.randn(int(mask.sum()), 128))
    row, note = _window(target)
    for i, (lab, z) in enumerate(zip(labels, logits)):
        hist = torch.bincount(lab, minlength=8).float()
        assert row[f"online_used_l{i}"] == float((hist > 0).sum())
        assert row[f"online_ppl_target_l{i}"] == pytest.approx(float(perplexity(hist)), rel=1e-5)
        assert row[f"online_ppl_pred_l{i}"] == pytest.approx(
            float(perplexity(z.detach().softmax(-1).mean(0))), rel=1e-5
        )
    assert perplexity(torch.ones(8)) == pytest.approx(8.0) and perplexity(torch.tensor([3.0, 0, 0])) == pytest.approx(1)
    assert _window(target) == ({}, None)  # the window was reset
    # a collapsed codebook: every frame on one codeword -> a warning, once
    with torch.no_grad():
        target.codebooks[:, 1:] += 100.0
    target.labels(batch, [], mask)
    row, note = _window(target)
    assert row["online_used_l0"] == 1.0 and note is not None and "online.reseed" in note
    target.labels(batch, [], mask)
    assert _window(target)[1] is None


@pytest.mark.parametrize("reseed", [False, True])
def test_dead_codewords_are_reseeded_from_recent_frames_only_when_asked(reseed: bool) -> None:
    pt = tiny_pretrainer(["online"], online=dict(top_k=1, codewords=8, reseed=reseed))
    (target,) = pt.targets
    pt.train()
    batch = cycle_batch(b=4, t=60)
    mask, _ = pt.masks(batch)
    with torch.no_grad():
        target.codebooks[0, 4:] += 100.0  # codewords 4..7 far away: never chosen
    (y,) = target.teacher_targets(batch.codes, batch.lengths)
    frames = y[mask & ~padding_mask(batch.lengths, 60)]  # (N, D) the frames statistics come from
    for step in range(1, RESEED_AFTER + 1):
        far = target.codebooks[0, 4:].clone()
        target.labels(batch, [], mask)
        pt.update(step)
    dead = target.codebooks[0, 4:]
    if not reseed:
        assert torch.equal(dead, far) and int(target.idle_steps[0, 4]) == RESEED_AFTER
        assert _window(target)[0]["online_reseeded"] == 0.0
        return
    # each dead codeword now sits on a distinct frame of the last batch
    dist = torch.cdist(dead, frames, compute_mode="donot_use_mm_for_euclid_dist")  # (4, N)
    assert float(dist.min(-1).values.max()) < 1e-5
    assert len(set(dist.argmin(-1).tolist())) == 4
    assert int(target.idle_steps[0, 4:].max()) == 0
    assert _window(target)[0]["online_reseeded"] >= 4.0  # 4..7, and any of 0..3 that no frame chose
