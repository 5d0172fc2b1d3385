"""Targets and the pre-trainer: reconstruction labels, online (DinoSR) codebooks and teacher, combination,
batch-split additivity (what makes DDP equal one process), and a short learning run."""

from __future__ import annotations

import pytest
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.model import model_config
from codec2vec.pretrain.data import Batch
from codec2vec.pretrain.masking import MaskingConfig
from codec2vec.pretrain.pretrainer import build_pretrainer
from codec2vec.pretrain.targets import IGNORE, TargetsConfig
from codec2vec.pretrain.targets.online import OnlineTarget, ema_decay, init_codebooks, masked_instance_norm
from conftest import CYCLE_K, CYCLE_V, cycle_batch, fake_info, tiny_pretrainer

K, V = CYCLE_K, CYCLE_V
INFO = fake_info(K, V)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_reconstruction_labels_are_the_codes_at_masked_frames() -> None:
    pt = tiny_pretrainer(["reconstruction"])
    batch = cycle_batch()
    mask, _ = pt.masks(batch)
    (target,) = pt.targets
    labels = target.labels(batch, [], mask=mask)
    assert len(labels) == K and target.num_classes == [V] * K
    for k, y in enumerate(labels):
        assert torch.equal(y[mask], batch.codes[:, k][mask])
        pad = torch.arange(y.shape[1])[None] >= batch.lengths[:, None]
        assert (y[pad] == IGNORE).all()
    out = pt(batch)
    assert int(out.counts["reconstruction"]) == int(mask.sum()) > 0
    assert torch.isclose(out.loss(), out.loss_sums["reconstruction"] / mask.sum())


def test_split_batch_sums_equal_the_whole_batch() -> None:
    """Per-utterance masks + summed losses: two halves (two DDP ranks) add up to the full batch."""
    pt = tiny_pretrainer(["reconstruction", "clusters"], weights={"clusters": 0.5}).eval()
    full = cycle_batch(b=6)
    halves = [
        Batch(codes=full.codes[s], lengths=full.lengths[s], seeds=full.seeds[s], labels={"km": full.labels["km"][s]})
        for s in (slice(0, 3), slice(3, 6))
    ]
    with torch.no_grad():
        whole, parts = pt(full), [pt(h) for h in halves]
    for name in ("reconstruction", "clusters"):
        assert int(whole.counts[name]) == sum(int(p.counts[name]) for p in parts)
        torch.testing.assert_close(whole.loss_sums[name], sum(p.loss_sums[name] for p in parts), rtol=1e-4, atol=1e-3)
    global_counts = {n: whole.counts[n] for n in whole.counts}
    total = sum(p.loss(counts_override=global_counts) for p in parts)
    torch.testing.assert_close(total, whole.loss(), rtol=1e-5, atol=1e-5)
    assert whole.weights == {"reconstruction": 1.0, "clusters": 0.5}


def test_unmasked_weight_scores_the_unmasked_valid_frames_too() -> None:
    """HuBERT's pred_nomask_weight: a second loss term per target over the unmasked, non-padding frames."""
    pt = tiny_pretrainer(["clusters"], unmasked_weight=0.25)
    batch = cycle_batch()
    mask, _ = pt.masks(batch)
    valid = torch.arange(mask.shape[1])[None] < batch.lengths[:, None]  # (B, T)
    out = pt(batch)
    assert int(out.counts["clusters"]) == int((valid & mask).sum()) > 0
    assert int(out.counts["clusters_unmasked"]) == int((valid & ~mask).sum()) > 0
    assert out.weights == pt.loss_weights() == {"clusters": 1.0, "clusters_unmasked": 0.25}
    assert set(tiny_pretrainer(["clusters"])(batch).counts) == {"clusters"}  # masked frames only by default


def test_unmasked_term_is_normalised_as_fairseq_hubert() -> None:
    """fairseq's hubert_criterion: (w_m * sum CE_masked + w_u * sum CE_unmasked) / (N_masked + N_unmasked),
    computed here by hand from the per-frame cross-entropies of the model's own logits."""
    pt = tiny_pretrainer(["clusters"], unmasked_weight=0.25).eval()
    batch = cycle_batch()
    mask, _ = pt.masks(batch)
    with torch.no_grad():
        out = pt(batch)
        layers, _ = pt.encoder(batch.inputs, batch.lengths, mask=mask, keep_levels=None)
        (target,) = pt.targets
        y = target.labels(batch, layers, mask=mask)[0]  # (B, T), -100 at padding
        scored = y != IGNORE
        logp = torch.log_softmax(target.logits(layers[-1][scored])[0].double(), -1)  # (N, C)
        ce = -logp[torch.arange(len(logp)), y[scored]]  # (N,) per valid frame
        m = mask[scored]
        expected = (1.0 * ce[m].sum() + 0.25 * ce[~m].sum()) / len(ce)
        separate = ce[m].mean() + 0.25 * ce[~m].mean()  # the old normalisation: each term its own mean
    assert abs(float(out.loss()) - float(expected)) < 1e-4
    assert abs(float(expected) - float(separate)) > 1e-2  # the two normalisations really differ here
    row = out.sums().row(out.weights)
    assert abs(row["loss"] - float(expected)) < 1e-4  # the logged loss is the same figure


def test_clusters_need_their_label_set() -> None:
    with pytest.raises(ConfigError, match="kmeans"):
        build_pretrainer(
            model=model_config("tiny"),
            masking=MaskingConfig(),
            targets=TargetsConfig(names=["clusters"]),
            codec=INFO,
            codebook_vectors=torch.randn(K, V, 8),
            label_classes={},
        )
    with pytest.raises(ConfigError):
        tiny_pretrainer(["reconstruction", "nope"])


def test_online_codebooks_move_toward_assigned_frames_and_unused_stay_put() -> None:
    pt = tiny_pretrainer(["online"], online=dict(codewords=8, top_k=2, codebook_decay=0.9))
    (target,) = pt.targets
    assert isinstance(target, OnlineTarget) and target.num_classes == [8, 8]
    before = target.codebooks.clone()
    sums = torch.zeros(2, 8, 128)
    counts = torch.zeros(2, 8)
    frames = before[0, 3] + 1.0  # 5 frames assigned to codeword 3 of layer 0, mean = codeword + 1
    sums[0, 3], counts[0, 3] = 5 * frames, 5
    target.apply_codebook_stats(sums, counts)
    after = target.codebooks
    assert (after[0, 3] - frames).norm() < (before[0, 3] - frames).norm()
    unused = torch.ones(2, 8, dtype=torch.bool)
    unused[0, 3] = False
    assert torch.equal(after[unused], before[unused])
    # Through the real path: labels() gathers statistics from the teacher's masked frames, update() applies them.
    pt.train()
    before = target.codebooks.clone()
    batch = cycle_batch()
    out = pt(batch)
    mask, _ = pt.masks(batch)
    teacher = target.teacher_targets(batch.codes, batch.lengths)
    assigned = [torch.cdist(y[mask], before[i]).argmin(-1) for i, y in enumerate(teacher)]
    pt.update(1)
    for i, idx in enumerate(assigned):
        used = torch.zeros(8, dtype=torch.bool)
        used[idx] = True
        assert torch.equal(target.codebooks[i][~used], before[i][~used])
        for j in idx.unique().tolist():
            mean = teacher[i][mask][idx == j].mean(0)
            assert (target.codebooks[i, j] - mean).norm() < (before[i, j] - mean).norm()
    assert out.counts["online"] == mask.sum()


def test_online_teacher_ema_schedule_and_freeze() -> None:
    assert ema_decay(0, 0.999, 0.9999, 100) == 0.999 and ema_decay(100, 0.999, 0.9999, 100) == 0.9999
    assert abs(ema_decay(50, 0.999, 0.9999, 100) - 0.99945) < 1e-9
    pt = tiny_pretrainer(["online"], online=dict(ema_start=0.5, ema_end=0.5, freeze_teacher_step=3))
    (target,) = pt.targets
    assert all(not p.requires_grad for p in target.teacher.parameters())
    teacher_ids = {id(p) for p in target.teacher.parameters()}
    assert not any(id(p) in teacher_ids for p in pt.trainable_parameters())
    student = pt.encoder.transformer.layers[0].fc1.weight
    teacher = target.teacher.layers[0].fc1.weight
    with torch.no_grad():
        student.add_(1.0)
    t0 = teacher.clone()
    pt.update(1)
    torch.testing.assert_close(teacher, 0.5 * t0 + 0.5 * student)
    conv_t = target.teacher.pos_conv.conv.bias
    conv_s = pt.encoder.transformer.pos_conv.conv.bias
    with torch.no_grad():
        conv_s.add_(1.0)
    pt.update(2)
    assert torch.equal(conv_t, conv_s)  # the positional conv is copied, not averaged (ema_layers_only)
    t1 = teacher.clone()
    pt.update(3)  # frozen from step 3
    assert torch.equal(teacher, t1)
    pt.train()
    assert not target.teacher.training


def test_online_codebooks_start_instance_normalised_as_dinosr() -> None:
    """DinoSR: randn (L', D, C) -> F.instance_norm -> every channel has mean 0, variance 1 over the codewords."""
    torch.manual_seed(0)
    target = OnlineTarget(encoder=tiny_pretrainer(["reconstruction"]).encoder, top_k=2, codewords=64)
    for c in (init_codebooks(3, 64, 8), target.codebooks):
        torch.testing.assert_close(c.mean(1), torch.zeros(c.shape[0], c.shape[2]), atol=1e-5, rtol=0)
        torch.testing.assert_close(c.var(1, unbiased=False), torch.ones(c.shape[0], c.shape[2]), atol=1e-3, rtol=0)
    assert init_codebooks(3, 64, 8).shape == (3, 64, 8)


def test_masked_instance_norm_ignores_padding() -> None:
    x = torch.randn(2, 10, 3)
    lengths = torch.tensor([10, 6])
    y = masked_instance_norm(x, lengths)
    torch.testing.assert_close(y[1, :6], masked_instance_norm(x[1:, :6], lengths[1:])[0])
    assert (y[1, 6:] == 0).all() and abs(float(y[0].mean())) < 1e-5


def test_tiny_model_learns_all_targets_combined() -> None:
    """A few dozen steps on a predictable token sequence, the three targets trained together on the same masked
    batch: each target's held-out masked accuracy climbs well above chance."""
    names = ["reconstruction", "clusters", "online"]
    pt = tiny_pretrainer(names, online=dict(codewords=16, top_k=2, ema_start=0.99, ema_end=0.99))
    opt = torch.optim.AdamW(pt.trainable_parameters(), lr=2e-3)
    dev = cycle_batch(b=8, seed=999)

    def accuracy() -> dict[str, float]:
        pt.eval()
        with torch.no_grad():
            return pt(dev).accuracy()

    first = accuracy()
    losses = []
    for step in range(50):
        pt.train()
        out = pt(cycle_batch(b=8, seed=step))
        loss = out.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pt.update(step + 1)
        losses.append(float(loss.detach()))
    last = accuracy()
    assert sum(losses[-5:]) < sum(losses[:5])
    chance = {"reconstruction": 1 / V, "clusters": 1 / 10, "online": 1 / 16}
    for n in names:
        assert last[n] > max(3 * chance[n], first[n] + 0.15), (n, first, last)
