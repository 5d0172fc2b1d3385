"""The pre-trainer: Codec2Vec encoder + span masker + targets (each with its heads), composed, not inherited.

Like torchaudio's `HuBERTPretrainModel(encoder, mask_generator, logit_generator)`. One forward:
  seeds (B,) -> span mask (B, T) and quantizer-dropout levels (B,)          (per utterance, `masking.py`; drawn
                                     on the CPU by `prepare` before the batch is copied to the device)
  encoder(codes (B, K, T) or audio (B, S), lengths, mask, keep_levels) -> layers [L + 1] x (B, T, D)
  for each target: labels [(B, T)] -> keep masked frames -> logits of the last layer's masked frames (N, D)
  -> summed cross-entropy, masked-frame count and correct count per target.
The masked frames are found with one `nonzero()` per forward (the only host sync; one more for the unmasked
frames when `unmasked_weight` > 0), shared by every target, head and layer.
Sums (not means) come back so the training loop can divide by the count all-reduced over DDP ranks and
accumulation steps, which makes N processes equal one process with the same global batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.codecs.base import CodecInfo
from codec2vec.model import Codec2VecEncoder, ModelConfig
from codec2vec.pretrain.config import PretrainConfig
from codec2vec.pretrain.data import IGNORE, Batch
from codec2vec.pretrain.masking import Masker, MaskingConfig
from codec2vec.pretrain.targets import Target, TargetsConfig, build_targets
from codec2vec.store import TokenStore

UNMASKED = "_unmasked"  # name suffix of a target's loss over the unmasked frames (`targets.unmasked_weight`)


@dataclass
class TargetSums:
    """Per-target sums over masked frames, in named fields: summed loss, correct predictions, frames counted."""

    loss: dict[str, float]
    correct: dict[str, float]
    count: dict[str, float]

    @classmethod
    def zeros(cls, names: list[str]) -> TargetSums:
        return cls({n: 0.0 for n in names}, {n: 0.0 for n in names}, {n: 0.0 for n in names})

    def add(self, other: TargetSums) -> None:
        for n in self.loss:
            self.loss[n] += other.loss[n]
            self.correct[n] += other.correct[n]
            self.count[n] += other.count[n]

    def all_reduce(self, world: int, device: torch.device) -> TargetSums:
        """The sums over all ranks (one all-reduce; itself when `world == 1`)."""
        if world == 1:
            return self
        import torch.distributed as dist

        names = list(self.loss)
        flat = torch.tensor(  # float64, as one process sums them: float32 loses counts past 2^24 frames
            [*self.loss.values(), *self.correct.values(), *self.count.values()], dtype=torch.float64, device=device
        )
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        k, v = len(names), flat.tolist()
        return TargetSums(dict(zip(names, v[:k])), dict(zip(names, v[k : 2 * k])), dict(zip(names, v[2 * k :])))

    def row(self, weights: dict[str, float] | None = None) -> dict[str, float]:
        """`loss_<t>` and `acc_<t>` per target (and `loss`, the weighted sum, when `weights` are given)."""
        out = {}
        for n in self.loss:
            out[f"loss_{n}"] = self.loss[n] / max(1.0, self.count[n])
            out[f"acc_{n}"] = self.correct[n] / max(1.0, self.count[n])
        if weights is not None:
            out = {"loss": float(combined_loss(self.loss, self.count, weights)), **out}
        return out


def combined_loss(sums: dict[str, Any], counts: dict[str, Any], weights: dict[str, float]) -> Any:
    """The weighted training loss from per-term summed cross-entropies and frame counts (tensors or floats).

    A term `t` alone: w_t * sum_t / N_t. A term with its unmasked companion `t_unmasked` (HuBERT's
    `pred_nomask_weight`): (w_t * sum_t + w_u * sum_u) / (N_t + N_u), fairseq's `hubert_criterion` (the summed
    masked and unmasked losses over the sample size, both frame sets counted), so an unmasked frame weighs w_u
    relative to a masked one, whatever the mask ratio."""
    total: Any = 0.0
    for n, s in sums.items():
        if n.endswith(UNMASKED) and n[: -len(UNMASKED)] in sums:
            continue  # folded into its masked term below
        u = n + UNMASKED
        if u in sums:
            total = total + (weights[n] * s + weights[u] * sums[u]) / _at_least_one(counts[n] + counts[u])
        else:
            total = total + weights[n] * s / _at_least_one(counts[n])
    return total


def _at_least_one(n: Any) -> Any:
    return n.clamp(min=1) if isinstance(n, Tensor) else max(1.0, float(n))


@dataclass
class PretrainOutput:
    """Per target: summed loss over masked frames (averaged across the target's heads), masked frames counted,
    correct predictions (averaged across heads)."""

    loss_sums: dict[str, Tensor]
    counts: dict[str, Tensor]
    correct: dict[str, Tensor]
    weights: dict[str, float]

    def loss(self, counts_override: dict[str, Tensor] | None = None) -> Tensor:
        """sum_t weight_t * loss_sum_t / count_t; pass global (all-reduced) counts to normalise across ranks.
        A target with an unmasked term is normalised as fairseq's HuBERT criterion does it: (w_m * CE_masked +
        w_u * CE_unmasked) / (N_masked + N_unmasked), CE summed over frames (`combined_loss`)."""
        counts = counts_override or self.counts
        return combined_loss(self.loss_sums, counts, self.weights)  # type: ignore[return-value]

    def sums(self) -> TargetSums:
        """This output's (local) per-target sums as plain numbers."""
        names = list(self.loss_sums)
        return TargetSums(
            {n: float(self.loss_sums[n].detach()) for n in names},
            {n: float(self.correct[n]) for n in names},
            {n: float(self.counts[n]) for n in names},
        )

    def accuracy(self) -> dict[str, float]:
        """Masked-frame accuracy per target (local counts)."""
        return {n: float(self.correct[n]) / max(1.0, float(self.counts[n])) for n in self.correct}


class Pretrainer(nn.Module):
    """Encoder + masking + targets; `forward(batch) -> PretrainOutput`, `update(step)` after each optimizer step."""

    encoder: Codec2VecEncoder

    def __init__(
        self,
        *,
        encoder: Codec2VecEncoder,
        masking: MaskingConfig,
        targets: list[nn.Module],
        unmasked_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.masking = masking
        self.targets = nn.ModuleList(targets)
        self.unmasked_weight = float(unmasked_weight)
        self.total_steps = 0  # train.steps, for a decaying quantizer-dropout schedule (build_from_config sets it)

    def loss_weights(self) -> dict[str, float]:
        """Every loss term's weight by name: each target, then `<target>_unmasked` when `unmasked_weight` > 0."""
        out = {t.name: float(t.weight) for t in self.target_list()}
        if self.unmasked_weight > 0:
            out.update({f"{t.name}{UNMASKED}": float(t.weight) * self.unmasked_weight for t in self.target_list()})
        return out

    def target_list(self) -> list[Target]:
        """The targets, typed by their protocol (an `nn.ModuleList` holds them for parameters and state)."""
        return [cast(Target, t) for t in self.targets]

    def masker(self) -> Masker:
        """What draws this model's masks and quantizer-dropout levels (picklable, for loader processes)."""
        cfg = self.encoder.config
        return Masker(
            self.masking, self.encoder.num_codebooks, cfg.quantizer_dropout, cfg.quantizer_dropout_min_levels,
            schedule=cfg.quantizer_dropout_schedule, total_steps=self.total_steps,
        )  # fmt: skip

    def prepare(self, batch: Batch, step: int | None = None) -> Batch:
        """A CPU `batch` with its span mask `(B, T)` and quantizer-dropout levels `(B,)` drawn from its seeds, so they
        are pinned and copied with it (`Batch.to`) and the device never waits for the host. `step`: the optimizer
        step the batch trains (0-based; None: 0), which a decaying quantizer-dropout schedule draws the levels at."""
        masker = self.masker()
        if batch.mask is None:
            batch = batch.with_masks(masker)
        if masker.needs_step and batch.keep is None:
            batch = dataclasses.replace(batch, keep=masker.keep_levels(batch.seeds.cpu(), step or 0))
        return batch

    def masks(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """Span mask `(B, T)` and quantizer-dropout levels `(B,)` (None outside training): the batch's own (`prepare`),
        else drawn now from its lengths and seeds read back to the CPU (a host sync when they are on a GPU)."""
        mask, keep = batch.mask, batch.keep
        if mask is None:
            mask, keep = self.masker()(batch.lengths.cpu(), batch.codes.shape[-1], batch.seeds.cpu())
            mask, keep = mask.to(batch.codes.device), None if keep is None else keep.to(batch.codes.device)
        return mask, keep if self.training else None

    def forward(self, batch: Batch) -> PretrainOutput:
        mask, keep = self.masks(batch)  # (B, T), (B,) | None
        layers, _ = self.encoder(batch.inputs, batch.lengths, mask=mask, keep_levels=keep)
        last = layers[-1].flatten(0, 1)  # (B T, D)
        parts = [("", mask.flatten().nonzero().squeeze(1))]  # (name suffix, scored frames (N,)): the host sync
        if self.unmasked_weight > 0:
            parts.append((UNMASKED, (~mask).flatten().nonzero().squeeze(1)))  # padding is IGNORE in the labels
        out = PretrainOutput(loss_sums={}, counts={}, correct={}, weights=self.loss_weights())
        for target in self.target_list():
            all_labels = [y.flatten() for y in target.labels(batch, layers, mask=mask)]  # heads x (B T,)
            for suffix, frames in parts:
                labels = [y.index_select(0, frames) for y in all_labels]  # heads x (N,)
                logits = target.logits(last.index_select(0, frames))  # heads x (N, C)
                ce = [
                    F.cross_entropy(z.float(), y, ignore_index=IGNORE, reduction="sum") for z, y in zip(logits, labels)
                ]
                hits = [((z.argmax(-1) == y) & (y != IGNORE)).sum() for z, y in zip(logits, labels)]
                name = target.name + suffix
                out.loss_sums[name] = torch.stack(ce).mean()
                out.correct[name] = torch.stack(hits).float().mean().detach()
                out.counts[name] = (labels[0] != IGNORE).sum().detach()
        return out

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After each optimizer step: EMA teacher and online codebooks (no-op for offline targets)."""
        for target in self.target_list():
            target.update(step)

    def skipped(self) -> None:
        """After a step the fp16 grad scaler skipped: the targets drop what they gathered for it (the online
        target's codebook statistics), so the next step applies only its own."""
        for target in self.target_list():
            drop = getattr(target, "skipped", None)
            if drop is not None:
                drop()

    @torch.no_grad()
    def window_metrics(self, reduce: Callable[[Tensor], Tensor]) -> tuple[dict[str, float], list[str]]:
        """Figures the targets gathered since the last call (e.g. the online target's codewords in use and
        perplexities), summed over ranks with `reduce`, and one-time warnings; every rank must call it."""
        row: dict[str, float] = {}
        notes: list[str] = []
        for target in self.target_list():
            fn = getattr(target, "window_metrics", None)
            if fn is not None:
                figures, note = fn(reduce)
                row.update(figures)
                if note:
                    notes.append(note)
        return row, notes

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimizer owns: the EMA teacher, online codebooks and frozen tables are excluded."""
        return (p for p in self.parameters() if p.requires_grad)


def build_pretrainer(
    *,
    model: ModelConfig,
    masking: MaskingConfig,
    targets: TargetsConfig,
    codec: CodecInfo,
    codebook_vectors: Tensor | None,
    label_classes: dict[str, int] | None = None,
) -> Pretrainer:
    """Assemble the pre-trainer for a store's codec: tables initialised from `codebook_vectors (K, V, D)`."""
    encoder = Codec2VecEncoder(
        config=model,
        num_codebooks=codec.num_codebooks,
        codebook_size=codec.codebook_size,
        codebook_vectors=codebook_vectors,
    )
    heads = build_targets(targets, encoder=encoder, label_classes=dict(label_classes or {}))
    return Pretrainer(encoder=encoder, masking=masking, targets=heads, unmasked_weight=targets.unmasked_weight)


def build_from_config(cfg: PretrainConfig, store: TokenStore) -> Pretrainer:
    """The `Pretrainer` for `cfg` on the codec and label sets of `store` (a target that needs a label set the
    store lacks is refused by `targets.build_targets`, naming the sets it has)."""
    label_classes = {name: int(store.labels(name).num_classes) for name in store.label_names()}
    model = build_pretrainer(
        model=cfg.model,
        masking=cfg.masking,
        targets=cfg.targets,
        codec=store.codec,
        codebook_vectors=store.codebook_vectors(),
        label_classes=label_classes,
    )
    model.total_steps = int(cfg.train.steps)
    return model


def label_names_for(cfg: PretrainConfig) -> list[str]:
    """The store label sets the configured targets read (their existence is checked where the target is built)."""
    return [cfg.targets.clusters.labels] if "clusters" in cfg.targets.names else []


__all__ = ["TargetSums", "build_from_config", "label_names_for", "PretrainOutput", "Pretrainer", "build_pretrainer"]
