"""The `online` target: DinoSR-style online clustering (Liu et al. 2023, "DinoSR: Self-Distillation and Online
Clustering for Self-supervised Speech Representation Learning"; github Alexander-H-Liu/dinosr, models/dinosr.py).

- The teacher is an EMA copy of the student's Transformer layers (and the LayerNorm after the positional conv;
  the positional conv itself is copied, DinoSR's `ema_layers_only`); it reads the student's projected input
  embedding of the UNMASKED codes with all K levels (no dropout), in eval mode.
- Target point (`target_point`): `ffn` (default, DinoSR/data2vec) takes each of the top-k layers' FFN output
  before the residual add and the LayerNorm (fairseq's `layer_result`), so the k targets do not share one
  residual stream; `layer` takes the full layer output after its LayerNorm. Each `(B, T, D)` is
  instance-normalised over the valid frames of each utterance.
- One codebook per layer (`codewords x D`): each frame's label is its nearest codeword. Codewords are EMAs of
  the frames assigned to them (decay 0.9): sum_j <- d sum_j + (1-d) s_j, n_j <- d n_j + (1-d) c_j,
  codeword_j = sum_j / n_j, for the codewords that received frames only; the others stay put.
  Statistics are gathered from the masked frames over the micro-batches of one optimizer step and
  all-reduced across processes before the update, so every rank holds the same codebooks.
- Instance norms and codeword distances run in fp32 with autocast off (DinoSR's `.float()`): in bf16 a
  fraction of the assignments flips.
- Teacher EMA decay anneals linearly from `ema_start` to `ema_end` over `ema_anneal_steps`. At
  `freeze_teacher_step` the teacher stops moving and gets its own frozen copy of the student's front end
  (tables, LayerNorm, projection; DinoSR's `copy_shared_modules`), so from then on neither the teacher nor
  anything it reads changes; the student's front end keeps training. This differs from DinoSR's default, which
  freezes the student's own front end (`freeze_pre_enc_modules`: one frozen front end shared by both); ours
  lets the student keep adapting its input embedding after the teacher stops.
- Codebooks start as DinoSR's: Gaussian, instance-normalised per channel over the codewords (`init_codebooks`).
- Collapse watch: per teacher layer, the codewords in use, the perplexity of the targets (of the assignment
  histogram) and of the predictions (of the mean predicted distribution, DinoSR's `target_ppl`/`pred_ppl`),
  over a logging window (`window_metrics`). Optional re-seeding (`reseed`, off by default as in DinoSR): a
  codeword that received no frame for `RESEED_AFTER` updates restarts at a frame of the current batch.
- The student predicts each layer's codeword index at masked frames with one linear head per layer.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor, nn

from codec2vec.common.errors import ConfigError
from codec2vec.model import Codec2VecEncoder, TransformerEncoder, padding_mask
from codec2vec.pretrain.data import IGNORE, Batch, hash64

TARGET_POINTS = ("ffn", "layer")
RESEED_AFTER = 10  # optimizer steps without a frame after which a codeword counts as dead (with `reseed`)


def masked_instance_norm(x: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise `(B, T, D)` per utterance and channel over its valid frames, in fp32; padding becomes 0."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        valid = (~padding_mask(lengths, x.shape[1]))[..., None].float()  # (B, T, 1)
        n = valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
        mean = (x * valid).sum(1, keepdim=True) / n  # (B, 1, D)
        var = ((x - mean) ** 2 * valid).sum(1, keepdim=True) / n  # (B, 1, D)
        return (x - mean) / torch.sqrt(var + eps) * valid


def init_codebooks(layers: int, codewords: int, dim: int) -> Tensor:
    """DinoSR's initial codebooks `(L', C, D)`: Gaussian, then instance-normalised per layer and channel over the
    codewords (`F.instance_norm` of `(L', D, C)`: each channel has mean 0 and variance 1 across the codewords),
    the statistics of the instance-normalised teacher frames they are compared with."""
    x = torch.randn(layers, codewords, dim)
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)  # (L', 1, D)
    return (x - mean) / torch.sqrt(var + 1e-5)


def ema_decay(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Linear anneal from `start` to `end` over `anneal_steps`, then `end` (data2vec/DinoSR)."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return start + (end - start) * step / anneal_steps


def nearest_codeword(y: Tensor, codebook: Tensor) -> Tensor:
    """`(N, D)` frames, `(C, D)` codebook -> `(N,)` index of the nearest codeword (L2, fp32 even under autocast)."""
    with torch.autocast(device_type=y.device.type, enabled=False):
        y, codebook = y.float(), codebook.float()
        d = (y * y).sum(-1, keepdim=True) - 2 * y @ codebook.t() + (codebook * codebook).sum(-1)[None, :]  # (N, C)
        return d.argmin(-1)


def perplexity(p: Tensor) -> Tensor:
    """exp(entropy) of the distributions `(..., C)` given as non-negative weights (normalised here) -> `(...)`."""
    p = p.float() / p.float().sum(-1, keepdim=True).clamp(min=1e-12)
    return torch.exp(-(p * p.clamp(min=1e-12).log()).sum(-1))


def _frontend_copy(encoder: Codec2VecEncoder) -> Codec2VecEncoder:
    """A frozen copy of everything the encoder runs before its Transformer (`features()`), without the Transformer."""
    front = copy.deepcopy(encoder, {id(encoder.transformer): None})
    front.requires_grad_(False)
    return front.eval()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class OnlineTarget(nn.Module):
    """DinoSR: EMA teacher + per-layer online codebooks; labels = nearest codeword of the teacher's layers."""

    name = "online"
    frozen: Tensor  # () bool: the teacher (and its front-end copy) stopped moving
    codebooks: Tensor  # (L', C, D)
    codeword_sums: Tensor  # (L', C, D)
    codeword_counts: Tensor  # (L', C)
    idle_steps: Tensor  # (L', C) long
    window_targets: Tensor  # (L', C)
    window_preds: Tensor  # (L', C)
    window_reseeded: Tensor  # ()

    def __init__(
        self,
        *,
        encoder: Codec2VecEncoder,
        top_k: int = 8,
        codewords: int = 256,
        codebook_decay: float = 0.9,
        ema_start: float = 0.999,
        ema_end: float = 0.9999,
        ema_anneal_steps: int = 30000,
        freeze_teacher_step: int | None = None,
        target_point: str = "ffn",
        reseed: bool = False,
        warn_used: float = 0.5,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        if target_point not in TARGET_POINTS:
            raise ConfigError(f"targets.online.target_point: {target_point!r}; allowed: {', '.join(TARGET_POINTS)}")
        cfg = encoder.config
        self.top_k = max(1, min(int(top_k), cfg.num_layers))
        self.num_classes = [int(codewords)] * self.top_k
        self.weight = float(weight)
        self.codebook_decay = float(codebook_decay)
        self.ema_start, self.ema_end, self.ema_anneal_steps = float(ema_start), float(ema_end), int(ema_anneal_steps)
        self.freeze_teacher_step = freeze_teacher_step
        self.target_point, self.reseed, self.warn_used = target_point, bool(reseed), float(warn_used)
        self._student = [encoder]  # a plain list: the student is the pre-trainer's, not registered twice
        self.teacher = TransformerEncoder(cfg)
        self.teacher.load_state_dict(encoder.transformer.state_dict())
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.frontend = _frontend_copy(encoder)  # the teacher's input once frozen (filled at the freeze step)
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        shape = (self.top_k, int(codewords))
        codebooks = init_codebooks(self.top_k, int(codewords), cfg.dim)  # (L', C, D)
        self.register_buffer("codebooks", codebooks)
        self.register_buffer("codeword_sums", codebooks.clone())
        self.register_buffer("codeword_counts", torch.ones(shape))
        self.register_buffer("idle_steps", torch.zeros(shape, dtype=torch.long))  # updates since a frame came
        # Logging window (persistent, so a resumed run logs what an uninterrupted one does).
        self.register_buffer("window_targets", torch.zeros(shape))  # (L', C) target histogram
        self.register_buffer("window_preds", torch.zeros(shape))  # (L', C) summed predicted distributions
        self.register_buffer("window_reseeded", torch.zeros(()))
        self.head = nn.Linear(cfg.dim, self.top_k * codewords)  # one linear head per teacher layer, fused
        self._pending: tuple[Tensor, Tensor] | None = None  # (sums (L', C, D), counts (L', C)) not yet applied
        self._recent: Tensor | None = None  # (L', C, D) frames of the last training batch, for re-seeding
        self._warned = False
        self._frozen = False  # a Python copy of `frozen`: reading the buffer would wait for the GPU every forward

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[arg-type]
        self._frozen = bool(self.frozen)  # once per load, not per step

    def train(self, mode: bool = True) -> OnlineTarget:
        super().train(mode)
        self.teacher.train(False)  # the teacher never uses dropout or layer drop
        self.frontend.train(False)
        return self

    @torch.no_grad()
    def teacher_targets(self, codes: Tensor, lengths: Tensor) -> list[Tensor]:
        """The teacher's top-k targets on the unmasked codes (or audio, for the baselines), instance-normalised:
        top_k x `(B, T, D)` fp32."""
        front: Codec2VecEncoder = self.frontend if self._frozen else self._student[0]
        x = front.features(codes, lengths)  # (B, T, D), all K levels, no mask
        layers, ffn = self.teacher(x, lengths, return_ffn=True)
        chosen = ffn if self.target_point == "ffn" else layers[1:]
        return [masked_instance_norm(y, lengths) for y in chosen[-self.top_k :]]

    @torch.no_grad()
    def labels(self, batch: Batch, student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        valid = ~padding_mask(batch.lengths, batch.codes.shape[-1])  # (B, T)
        chosen = (valid if mask is None else valid & mask).flatten()  # (B T,) frames whose statistics move codebooks
        weight = chosen.float()
        out, sums, counts, recent = [], [], [], []
        for i, y in enumerate(self.teacher_targets(batch.inputs, batch.lengths)):
            flat = y.reshape(-1, y.shape[-1])  # (B T, D)
            idx = nearest_codeword(flat, self.codebooks[i])  # (B T,)
            out.append(idx.view(y.shape[:2]).masked_fill(~valid, IGNORE))
            if self.training:  # weighted by `chosen`, not selected: no host sync
                counts.append(torch.zeros_like(self.codeword_counts[i]).index_add_(0, idx, weight))  # (C,)
                sums.append(torch.zeros_like(self.codebooks[i]).index_add_(0, idx, flat * weight[:, None]))  # (C, D)
                if self.reseed:
                    recent.append(self._spread(flat, chosen, self.codebooks[i]))
        if self.training:
            new = (torch.stack(sums), torch.stack(counts))
            self._pending = new if self._pending is None else (self._pending[0] + new[0], self._pending[1] + new[1])
            self.window_targets += new[1]
            self._recent = torch.stack(recent) if recent else None  # (L', C, D)
        return out

    @staticmethod
    def _spread(frames: Tensor, chosen: Tensor, fallback: Tensor) -> Tensor:
        """`C` of the `chosen (M,)` frames of `(M, D)`, spread evenly (the codebook `(C, D)` itself when none is
        chosen): re-seeding material of the same shape on every rank, without a random generator or a host sync."""
        if frames.shape[0] == 0:
            return fallback.clone()
        rank = chosen.long().cumsum(0)  # (M,) chosen frames up to each frame
        n = rank[-1:].clamp(min=1)  # (1,)
        want = (torch.linspace(0, 1, fallback.shape[0], device=frames.device) * (n - 1)).round().long()  # (C,)
        pick = torch.searchsorted(rank, want + 1).clamp(max=frames.shape[0] - 1)  # (C,) the want-th chosen frame
        return torch.where(rank[-1] > 0, frames[pick].to(fallback.dtype), fallback)  # (C, D)

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> top_k x `(N, codewords)`; in training also sums the predicted distributions."""
        out = list(self.head(x).split(self.num_classes[0], dim=-1))
        if self.training:
            with torch.no_grad():
                self.window_preds += torch.stack([z.detach().float().softmax(-1).sum(0) for z in out])  # (L', C)
        return out

    def skipped(self) -> None:
        """The step these statistics came from was skipped (fp16 overflow): they are dropped, not carried over."""
        self._pending = None
        self._recent = None

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Apply the gathered codebook statistics (all-reduced), re-seed dead codewords (option), then move the
        teacher toward the student, or freeze it with its own copy of the front end at `freeze_teacher_step`
        (DinoSR instead freezes the student's front end, which both then share; here the student's keeps training)."""
        if self._pending is not None:
            sums, counts = self._pending
            self._pending = None
            if _distributed():
                torch.distributed.all_reduce(sums)
                torch.distributed.all_reduce(counts)
            self.apply_codebook_stats(sums, counts)
            if self.reseed and self._recent is not None:
                if _distributed():
                    torch.distributed.broadcast(self._recent, src=0)  # every rank re-seeds from the same frames
                self.reseed_dead(self._recent, step)
        self._recent = None
        student = self._student[0]
        if self.freeze_teacher_step is not None and step >= self.freeze_teacher_step:
            if not self._frozen:
                front = {k: v for k, v in student.state_dict().items() if not k.startswith("transformer.")}
                self.frontend.load_state_dict(front)
                self.frozen.fill_(True)
                self._frozen = True
            return
        d = ema_decay(step, self.ema_start, self.ema_end, self.ema_anneal_steps)
        params = dict(student.transformer.named_parameters())
        moving = [(t, params[n].detach()) for n, t in self.teacher.named_parameters() if not n.startswith("pos_conv.")]
        copied = [(t, params[n].detach()) for n, t in self.teacher.named_parameters() if n.startswith("pos_conv.")]
        if moving:  # t <- d t + (1 - d) s, in a few kernels (DinoSR's ema_layers_only: the positional conv is copied)
            torch._foreach_lerp_([t for t, _ in moving], [s.to(t.dtype) for t, s in moving], 1.0 - d)
        for t, s in copied:
            t.copy_(s)
        for tb, sb in zip(self.teacher.buffers(), student.transformer.buffers()):
            tb.copy_(sb)

    @torch.no_grad()
    def apply_codebook_stats(self, sums: Tensor, counts: Tensor) -> None:
        """EMA-update the codewords that received frames: sums `(L', C, D)`, counts `(L', C)`."""
        d = self.codebook_decay
        used = counts > 0  # (L', C); torch.where, not boolean indexing: no host sync
        self.codeword_sums.copy_(
            torch.where(used[..., None], d * self.codeword_sums + (1 - d) * sums, self.codeword_sums)
        )
        self.codeword_counts.copy_(torch.where(used, d * self.codeword_counts + (1 - d) * counts, self.codeword_counts))
        fresh = self.codeword_sums / self.codeword_counts[..., None]
        self.codebooks.copy_(torch.where(used[..., None], fresh, self.codebooks))
        self.idle_steps.add_(1).masked_fill_(used, 0)

    @torch.no_grad()
    def reseed_dead(self, recent: Tensor, step: int) -> Tensor:
        """Restart codewords idle for `RESEED_AFTER` updates at distinct frames of `recent (L', C, D)`; the choice
        is seeded by `step`, so every rank and a resumed run pick the same. Returns how many were re-seeded `()`
        (on the device: nothing here waits for it)."""
        dead = self.idle_steps >= RESEED_AFTER  # (L', C)
        g = torch.Generator().manual_seed(hash64("reseed", step))
        perms = torch.stack([torch.randperm(recent.shape[1], generator=g) for _ in range(self.top_k)])  # (L', C)
        slot = (dead.long().cumsum(-1) - 1).clamp(min=0)  # (L', C): the j-th dead codeword of a layer takes perm[j]
        pick = perms.to(recent.device, non_blocking=True).gather(1, slot)  # (L', C)
        frames = recent.gather(1, pick[..., None].expand_as(recent))  # (L', C, D)
        self.codebooks.copy_(torch.where(dead[..., None], frames, self.codebooks))
        self.codeword_sums.copy_(torch.where(dead[..., None], frames, self.codeword_sums))
        self.codeword_counts.masked_fill_(dead, 1.0)
        self.idle_steps.masked_fill_(dead, 0)
        n = dead.sum()
        self.window_reseeded += n
        return n

    @torch.no_grad()
    def window_metrics(self, reduce: Callable[[Tensor], Tensor]) -> tuple[dict[str, float], str | None]:
        """Per teacher layer i over the window since the last call (summed over ranks by `reduce`):
        `online_used_l{i}` codewords that received a target frame, `online_ppl_target_l{i}` and
        `online_ppl_pred_l{i}`; `online_reseeded`. Resets the window; the second value is a one-time warning
        when a layer uses fewer than `warn_used` of its codewords."""
        stats = reduce(torch.stack([self.window_targets, self.window_preds]).clone())  # (2, L', C)
        targets, preds = stats[0], stats[1]
        row: dict[str, float] = {}
        if float(targets.sum()) > 0:
            used = (targets > 0).sum(-1)  # (L',)
            for i, (u, pt, pp) in enumerate(
                zip(used.tolist(), perplexity(targets).tolist(), perplexity(preds).tolist())
            ):
                row[f"online_used_l{i}"] = float(u)
                row[f"online_ppl_target_l{i}"] = pt
                row[f"online_ppl_pred_l{i}"] = pp
            row["online_reseeded"] = float(self.window_reseeded)
        self.window_targets.zero_()
        self.window_preds.zero_()
        self.window_reseeded.zero_()
        note = None
        c = self.num_classes[0]
        low = [
            i for i in range(self.top_k) if f"online_used_l{i}" in row and row[f"online_used_l{i}"] < self.warn_used * c
        ]
        if low and not self._warned:
            self._warned = True
            worst = min(row[f"online_used_l{i}"] for i in low)
            note = (
                f"online target: codebook collapse? teacher layer(s) {low} use as few as {worst:.0f} of {c} codewords "
                f"(< targets.online.warn_used={self.warn_used}); see online_used_l* in metrics.jsonl, "
                f"try targets.online.reseed=true"
            )
        return row, note


__all__ = [
    "RESEED_AFTER",
    "TARGET_POINTS",
    "OnlineTarget",
    "ema_decay",
    "masked_instance_norm",
    "nearest_codeword",
    "perplexity",
]
