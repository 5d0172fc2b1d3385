"""The `online` target: DinoSR-style online clustering (Liu et al. 2023, "DinoSR: Self-Distillation and Online
Clustering for Self-supervised Speech Representation Learning").

- The teacher is an EMA copy of the student's Transformer layers (and the LayerNorm after the positional conv;
  the positional conv itself is copied, DinoSR's `ema_layers_only`); it reads the student's projected input
  embedding of the UNMASKED codes with all K levels (no dropout), in eval mode.
- Its top-k layer outputs `(B, T, D)` are each instance-normalised over the valid frames of each utterance
  (DinoSR normalises each layer's FFN output before the residual; we use the layer output, the
  representation the student exposes).
- One codebook per layer (`codewords x D`): each frame's label is its nearest codeword. Codewords are EMAs of
  the frames assigned to them (decay 0.9): sum_j <- d sum_j + (1-d) s_j, n_j <- d n_j + (1-d) c_j,
  codeword_j = sum_j / n_j, for the codewords that received frames only; the others stay put.
  Statistics are gathered from the masked frames over the micro-batches of one optimizer step and
  all-reduced across processes before the update, so every rank holds the same codebooks.
- Teacher EMA decay anneals linearly from `ema_start` to `ema_end` over `ema_anneal_steps`; after
  `freeze_teacher_step` the teacher stops moving.
- The student predicts each layer's codeword index at masked frames with one linear head per layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codec2vec.data import IGNORE, Batch
from codec2vec.model import Codec2VecEncoder, TransformerEncoder, padding_mask


def masked_instance_norm(x: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise `(B, T, D)` per utterance and channel over its valid frames; padding becomes 0."""
    valid = (~padding_mask(lengths, x.shape[1]))[..., None].to(x.dtype)  # (B, T, 1)
    n = valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    mean = (x * valid).sum(1, keepdim=True) / n  # (B, 1, D)
    var = ((x - mean) ** 2 * valid).sum(1, keepdim=True) / n  # (B, 1, D)
    return (x - mean) / torch.sqrt(var + eps) * valid


def ema_decay(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Linear anneal from `start` to `end` over `anneal_steps`, then `end` (data2vec/DinoSR)."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return start + (end - start) * step / anneal_steps


def nearest_codeword(y: Tensor, codebook: Tensor) -> Tensor:
    """`(N, D)` frames, `(C, D)` codebook -> `(N,)` index of the nearest codeword (L2)."""
    d = (y * y).sum(-1, keepdim=True) - 2 * y @ codebook.t() + (codebook * codebook).sum(-1)[None, :]  # (N, C)
    return d.argmin(-1)


class OnlineTarget(nn.Module):
    """DinoSR: EMA teacher + per-layer online codebooks; labels = nearest codeword of the teacher's layers."""

    name = "online"

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
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        cfg = encoder.config
        self.top_k = max(1, min(int(top_k), cfg.num_layers))
        self.num_classes = [int(codewords)] * self.top_k
        self.weight = float(weight)
        self.codebook_decay = float(codebook_decay)
        self.ema_start, self.ema_end, self.ema_anneal_steps = float(ema_start), float(ema_end), int(ema_anneal_steps)
        self.freeze_teacher_step = freeze_teacher_step
        self._student = [encoder]  # a plain list: the student is the pre-trainer's, not registered twice
        self.teacher = TransformerEncoder(cfg)
        self.teacher.load_state_dict(encoder.transformer.state_dict())
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        codebooks = torch.randn(self.top_k, codewords, cfg.dim)  # (L', C, D): instance-normed frames are ~N(0, 1)
        self.register_buffer("codebooks", codebooks)
        self.register_buffer("codeword_sums", codebooks.clone())
        self.register_buffer("codeword_counts", torch.ones(self.top_k, codewords))
        self.head = nn.Linear(cfg.dim, self.top_k * codewords)  # one linear head per teacher layer, fused
        self._pending: tuple[Tensor, Tensor] | None = None  # (sums (L', C, D), counts (L', C)) not yet applied

    def train(self, mode: bool = True) -> OnlineTarget:
        super().train(mode)
        self.teacher.train(False)  # the teacher never uses dropout or layer drop
        return self

    @torch.no_grad()
    def teacher_targets(self, codes: Tensor, lengths: Tensor) -> list[Tensor]:
        """The teacher's top-k layers on the unmasked codes (or audio, for the baselines), instance-normalised:
        top_k x `(B, T, D)` float."""
        x = self._student[0].features(codes, lengths)  # (B, T, D), all K levels, no mask
        layers = self.teacher(x, lengths)[-self.top_k :]
        return [masked_instance_norm(y.float(), lengths) for y in layers]

    @torch.no_grad()
    def labels(self, batch: Batch, student_layers: list[Tensor], mask: Tensor | None = None) -> list[Tensor]:
        valid = ~padding_mask(batch.lengths, batch.codes.shape[-1])  # (B, T)
        chosen = valid if mask is None else valid & mask  # frames whose statistics move the codebooks
        out, sums, counts = [], [], []
        for i, y in enumerate(self.teacher_targets(batch.inputs, batch.lengths)):
            idx = nearest_codeword(y.reshape(-1, y.shape[-1]), self.codebooks[i]).view(y.shape[:2])  # (B, T)
            out.append(idx.masked_fill(~valid, IGNORE))
            if self.training:
                sel, frames = idx[chosen], y[chosen]  # (N,), (N, D)
                counts.append(torch.bincount(sel, minlength=self.num_classes[i]).float())  # (C,)
                sums.append(torch.zeros_like(self.codebooks[i]).index_add_(0, sel, frames))  # (C, D)
        if self.training:
            new = (torch.stack(sums), torch.stack(counts))
            self._pending = new if self._pending is None else (self._pending[0] + new[0], self._pending[1] + new[1])
        return out

    def logits(self, x: Tensor) -> list[Tensor]:
        """x `(N, D)` -> top_k x `(N, codewords)`."""
        return list(self.head(x).split(self.num_classes[0], dim=-1))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Apply the gathered codebook statistics (all-reduced), then move the teacher toward the student."""
        if self._pending is not None:
            sums, counts = self._pending
            self._pending = None
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(sums)
                torch.distributed.all_reduce(counts)
            self.apply_codebook_stats(sums, counts)
        if self.freeze_teacher_step is None or step < self.freeze_teacher_step:
            d = ema_decay(step, self.ema_start, self.ema_end, self.ema_anneal_steps)
            student = dict(self._student[0].transformer.named_parameters())
            for name, t in self.teacher.named_parameters():
                s = student[name].detach().to(t.dtype)
                if name.startswith("pos_conv."):  # DinoSR's ema_layers_only: the positional conv is copied
                    t.copy_(s)
                else:
                    t.mul_(d).add_(s, alpha=1.0 - d)
            for t, s in zip(self.teacher.buffers(), self._student[0].transformer.buffers()):
                t.copy_(s)

    @torch.no_grad()
    def apply_codebook_stats(self, sums: Tensor, counts: Tensor) -> None:
        """EMA-update the codewords that received frames: sums `(L', C, D)`, counts `(L', C)`."""
        d = self.codebook_decay
        used = counts > 0  # (L', C)
        self.codeword_sums[used] = d * self.codeword_sums[used] + (1 - d) * sums[used]
        self.codeword_counts[used] = d * self.codeword_counts[used] + (1 - d) * counts[used]
        self.codebooks[used] = self.codeword_sums[used] / self.codeword_counts[used][:, None]


__all__ = ["OnlineTarget", "ema_decay", "masked_instance_norm", "nearest_codeword"]
