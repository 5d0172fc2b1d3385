"""SUPERB-style probing of a frozen upstream: train a light head on cached features, early-stop on dev, score test.

Protocol (SUPERB, as s3prl's downstream configs): the upstream is frozen; its hidden states are mixed by a
learned softmax-weighted sum (equal weights at the start) and fed to the task's light head (`tasks.TASKS`),
trained under a protocol (`tasks.Protocol`: `ours` by default, or s3prl's `superb` settings) with gradient
clipping 1; the head with the best dev metric is kept (patience in epochs) and scored on
test, with a 95% bootstrap interval over test items. Seeds are fixed: the same inputs give the same number.
`per_layer=True` also fits the same head on each layer alone (where phones, speakers and words live).
Features are extracted once per (upstream, task folder) and cached (`features.cached_features`), so epochs
cost only the head: utterance tasks train on per-layer mean-pooled `(N, L, D)` tensors held in memory,
centred on the train split's mean (`center_pooled`).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import ConfigError
from codec2vec.common.progress import Progress
from codec2vec.corpora.manifest import read_manifest
from codec2vec.features.cache import FeatureDir, cached_features
from codec2vec.features.sources import FeatureSource, feature_source
from codec2vec.probe.metrics import bootstrap_ci, ratio_of_sums
from codec2vec.probe.paired import MIN_ITEMS, paired_delta, small_test_warning
from codec2vec.probe.tasks import (
    Protocol,
    TaskSpec,
    check_rows,
    get_protocol,
    get_task,
    item_stats,
    loss,
    make_head,
    targets,
    vocabularies,
)

SPLITS = ("train", "dev", "test")
MAX_FRAMES = 4000  # frame tasks: at most this many padded frames per batch (80 s of audio at 50 Hz)


class _Split:
    """One split's inputs and targets: features by id (frame tasks) or pooled `(N, L, D)` (utterance tasks)."""

    def __init__(self, spec: TaskSpec, fdir: FeatureDir, rows: list[dict], tgt: list[list[int]]) -> None:
        self.spec, self.fdir, self.ids, self.tgt = spec, fdir, [r["id"] for r in rows], tgt
        self.frames = np.array([fdir.num_frames(u) for u in self.ids], dtype=np.int64)
        self.pooled: Tensor | None = None
        if spec.level == "utterance":
            dim = (len(fdir.layers), int(fdir.get(self.ids[0]).shape[-1])) if self.ids else (1, 1)
            pooled = np.zeros((len(self.ids), *dim), dtype=np.float32)  # (N, L, D)
            for i, uid in enumerate(self.ids):
                x = fdir.get(uid)
                if len(x):
                    pooled[i] = x.astype(np.float32).mean(0)
            self.pooled = torch.from_numpy(pooled)

    def batches(self, layers: slice, rng: np.random.Generator | None) -> Iterator[tuple[Any, Tensor | None, list]]:
        """(input, lengths, targets) batches; shuffled when `rng` is given. Frame tasks batch by length."""
        if self.spec.level == "utterance":
            assert self.pooled is not None
            order = rng.permutation(len(self.ids)) if rng is not None else np.arange(len(self.ids))
            for s in range(0, len(order), self.spec.batch):
                idx = order[s : s + self.spec.batch]
                yield self.pooled[torch.from_numpy(idx)][:, layers], None, [self.tgt[i] for i in idx]
            return
        order = np.argsort(self.frames, kind="stable")
        groups: list[list[int]] = []
        group: list[int] = []
        for i in order:
            full = len(group) >= self.spec.batch or (len(group) + 1) * max(int(self.frames[i]), 1) > MAX_FRAMES
            if group and full:
                groups.append(group)
                group = []
            group.append(int(i))
        groups += [group] if group else []
        for g in rng.permutation(len(groups)) if rng is not None else range(len(groups)):
            members = groups[g]
            lengths = torch.from_numpy(self.frames[members])  # (B,)
            first = self.fdir.get(self.ids[members[0]])[:, layers]
            x = np.zeros((len(members), int(lengths.max()), *first.shape[1:]), dtype=np.float32)  # (B, T, L, D)
            for b, i in enumerate(members):
                x[b, : self.frames[i]] = self.fdir.get(self.ids[i])[:, layers]
            yield torch.from_numpy(x), lengths, [self.tgt[i] for i in members]


def center_pooled(splits: dict[str, _Split]) -> None:
    """Utterance tasks: the train split's mean pooled feature `(L, D)` subtracted from every split's pooled
    `(N, L, D)`. The heads are linear up to the loss, so no figure a head can reach changes, only how fast Adam
    gets there: mean-pooled LayerNorm outputs share one large common component, and on it the SID head crawled
    (on the demo's pre-trained model: 0.571 after 124 epochs uncentred, 0.625 centred; the codec's embeddings
    0.888 and 0.885). Scaling each dimension to unit variance as well was tried and rejected: it lifts noise
    dimensions to the signal's scale (codec embeddings 0.818; the IC slot head fell below 0.9 on a test task)."""
    train = splits["train"].pooled
    if train is None or len(train) == 0:
        return
    mean = train.mean(0)  # (L, D)
    for split in splits.values():
        if split.pooled is not None:
            split.pooled = split.pooled - mean


def layer_stats(split: _Split) -> tuple[Tensor, Tensor]:
    """The train split's per-layer mean `(L, D)` and standard deviation `(L,)` (one number per layer, over all
    dimensions): of the pooled features for utterance tasks, of every frame for frame tasks."""
    if split.pooled is not None:
        x = split.pooled.double()  # (N, L, D)
        mean = x.mean(0)
        return mean.float(), ((x - mean) ** 2).mean((0, 2)).sqrt().float()
    total: Tensor | None = None
    total_sq: Tensor | None = None
    n = 0
    for uid in split.ids:
        x = torch.from_numpy(np.asarray(split.fdir.get(uid), dtype=np.float64))  # (T, L, D)
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x**2).sum(0) if total_sq is None else total_sq + (x**2).sum(0)
        n += len(x)
    if total is None or total_sq is None or not n:
        return torch.zeros(1, 1), torch.ones(1)
    mean = total / n  # (L, D)
    var = (total_sq / n - mean**2).clamp(min=0).mean(1)  # (L,)
    return mean.float(), var.sqrt().float()


def _evaluate(
    spec: TaskSpec, head: torch.nn.Module, split: _Split, layers: slice, vocabs: list
) -> tuple[np.ndarray, float]:
    """Per-item `(numerator, denominator)` stats and the mean loss over the split."""
    head.eval()
    stats, losses = [], []
    with torch.no_grad():
        for x, lengths, tgt in split.batches(layers, None):
            out = head(x, lengths) if spec.level == "frame" else head(x)
            stats.append(item_stats(spec, out, tgt, lengths, vocabs))
            losses.append(float(loss(spec, out, tgt, lengths)))
    return (np.concatenate(stats) if stats else np.zeros((0, 2))), float(np.mean(losses)) if losses else 0.0


def _fit(
    spec: TaskSpec,
    data: dict[str, _Split],
    *,
    layers: slice,
    num_layers: int,
    dim: int,
    vocabs: list,
    seed: int,
    max_epochs: int,
    patience: int,
    stats: tuple[Tensor, Tensor] | None,
    proto: Protocol,
    progress: Progress | None = None,
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """Train one head; returns the best-on-dev head and the per-epoch history (`progress`: one tick per epoch).
    `stats`: the train split's per-layer mean and scale the weighted sum standardises by (None: raw layers)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = make_head(spec, num_layers=num_layers, dim=dim, vocabs=vocabs, hidden=proto.lstm_hidden)
    if stats is not None:
        head.mix.set_norm(stats[0][layers], stats[1][layers])  # type: ignore[operator,union-attr]
    # ours: the mixing logits get their own, larger rate: at the head's rate Adam moves a logit by about `lr`
    # per step, and the few hundred steps of a probe left the weights near equal (a planted informative layer
    # among louder noise layers: 0.13 accuracy mixed against 1.00 alone)
    mix = [p for n, p in head.named_parameters() if n.startswith("mix.")]
    rest = [p for n, p in head.named_parameters() if not n.startswith("mix.")]
    groups = [{"params": rest, "lr": spec.lr}, {"params": mix, "lr": proto.mix_lr or spec.lr}]
    opt = torch.optim.AdamW(groups) if proto.optimizer == "adamw" else torch.optim.Adam(groups)
    # ours: the rate falls linearly to a tenth over `max_epochs`: a constant rate leaves the head jittering
    # between epochs, and the best-on-dev pick (on a small dev split) then lands on noise
    decay = 0.9 if proto.decay else 0.0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - decay * min(e / max(max_epochs, 1), 1.0))
    sign = -1.0 if spec.lower_is_better else 1.0
    best, best_state, since = (-np.inf, -np.inf), copy.deepcopy(head.state_dict()), 0
    history: list[dict[str, Any]] = []
    for epoch in range(1, max_epochs + 1):
        head.train()
        losses = []
        for x, lengths, tgt in data["train"].batches(layers, rng):
            out = head(x, lengths) if spec.level == "frame" else head(x)
            l_ = loss(spec, out, tgt, lengths)
            opt.zero_grad()
            l_.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            losses.append(l_.item())
        sched.step()
        dev_stats, dev_loss = _evaluate(spec, head, data["dev"], layers, vocabs)
        dev = ratio_of_sums(dev_stats)
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else 0.0, "dev": dev, "dev_loss": dev_loss}
        )
        # Best dev metric; on a tie (e.g. WER stuck at 1.0 early in CTC training) the lower dev loss.
        score = (sign * dev, -dev_loss)
        if progress is not None:
            shown = max(dev, sign * best[0]) if sign > 0 else min(dev, sign * best[0])
            progress.update(1, f"epoch {epoch} dev {spec.metric} {dev:.4f} (best {shown:.4f})")
        if score > best:
            best, best_state, since = score, copy.deepcopy(head.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                break
    head.load_state_dict(best_state)
    return head, history


def _load_task(data: Path) -> tuple[dict[str, list[dict]], dict[str, Any]]:

    missing = [str(data / f"{s}.jsonl") for s in SPLITS if not (data / f"{s}.jsonl").is_file()]
    if missing:
        raise ConfigError(f"{data}: not a task folder (missing {', '.join(missing)})")
    meta_path = data / "meta.json"
    try:
        meta = json.loads(meta_path.read_bytes()) if meta_path.is_file() else {}
    except ValueError as e:
        raise ConfigError(f"{meta_path}: not JSON ({e})") from None
    rows = {s: read_manifest(data / f"{s}.jsonl") for s in SPLITS}
    return rows, meta if isinstance(meta, dict) else {}


def check_epochs(max_epochs: Any) -> None:
    """`--max-epochs` must be a whole number >= 1 (0 or less would train nothing and report an untrained head)."""
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ConfigError(f"--max-epochs {max_epochs}: must be a whole number >= 1")


def run_probe(
    task: str,
    *,
    data: str | Path,
    source: FeatureSource,
    seed: int = 0,
    per_layer: bool = False,
    cache_dir: Path | None = None,
    max_epochs: int = 100,
    patience: int = 8,
    progress: bool = False,
    store: str | Path | None = None,
    shuffle_labels: bool = False,
    protocol: str = "ours",
) -> dict[str, Any]:
    """Probe `source` on the task folder `data`; returns {"task", "metric", "value", "ci", "layer_weights",
    "per_layer"? , "n_test", "model", "epochs", "history"}. `shuffle_labels` permutes the train and dev targets
    across utterances (a control that must score at chance)."""
    t0 = time.monotonic()
    data = Path(data)
    rows, _ = _load_task(data)
    check_rows(get_task(task), rows, data)  # every row has the task's fields, before any feature is extracted
    fdir = cached_features(source, data, store=store, cache_dir=cache_dir, progress=progress)
    result = probe_features(
        task, fdir=fdir, rows=rows, seed=seed, per_layer=per_layer, max_epochs=max_epochs, patience=patience,
        progress=progress, shuffle_labels=shuffle_labels, protocol=protocol,
    )  # fmt: skip
    result.update(model=source.name, source=source.kind, seconds=round(time.monotonic() - t0, 2))
    return result


def probe_features(
    task: str,
    *,
    fdir: FeatureDir,
    rows: dict[str, list[dict[str, Any]]],
    seed: int = 0,
    per_layer: bool = False,
    max_epochs: int = 100,
    patience: int = 8,
    progress: bool = False,
    shuffle_labels: bool = False,
    protocol: str = "ours",
) -> dict[str, Any]:
    """The probe proper, on features already in `fdir` for the manifest `rows` of each split; `protocol`:
    `ours` or `superb` (s3prl's per-task settings, `tasks.Protocol`)."""
    check_epochs(max_epochs)
    spec = get_task(task)
    proto = get_protocol(spec, protocol)
    spec = replace(spec, lr=proto.lr, batch=proto.batch)
    rows = {s: [r for r in rows[s] if r["id"] in fdir] for s in SPLITS}
    for s in SPLITS:
        if not rows[s]:
            raise ConfigError(f"task {task}: the {s} split has no utterance with features (all rejected or empty)")
    vocabs = vocabularies(spec, [r for s in SPLITS for r in rows[s]])
    tgt = {s: targets(spec, rows[s], vocabs) for s in SPLITS}
    if shuffle_labels:
        rng = np.random.default_rng(seed + 1)
        for s in ("train", "dev"):
            tgt[s] = [tgt[s][i] for i in rng.permutation(len(tgt[s]))]
    splits = {s: _Split(spec, fdir, rows[s], tgt[s]) for s in SPLITS}
    if proto.standardise:
        center_pooled(splits)
    num_layers, dim = len(fdir.layers), int(fdir.get(rows["train"][0]["id"]).shape[-1])
    kw = dict(vocabs=vocabs, seed=seed, max_epochs=max_epochs, patience=patience, dim=dim)
    bar = Progress(f"probe {task}", max_epochs, unit="epochs", enabled=progress)
    kw["stats"] = layer_stats(splits["train"]) if proto.standardise else None
    kw["proto"] = proto
    head, history = _fit(spec, splits, layers=slice(None), num_layers=num_layers, progress=bar, **kw)  # type: ignore[arg-type]
    bar.close()
    stats, _ = _evaluate(spec, head, splits["test"], slice(None), vocabs)
    order = np.argsort(splits["test"].frames, kind="stable") if spec.level == "frame" else range(len(stats))
    result: dict[str, Any] = {
        "task": task,
        "metric": spec.metric,
        "value": ratio_of_sums(stats),
        "ci": bootstrap_ci(stats, seed=seed),
        "layer_weights": head.mix.weights(),  # type: ignore[union-attr,operator]
        "n_test": len(stats),
        "n_train": len(rows["train"]),
        "epochs": len(history),
        "history": history,
        "seed": seed,
        "protocol": protocol,
        # per test item (numerator, denominator) in `_evaluate`'s order (frame tasks: by length): paired deltas
        "test_items": {splits["test"].ids[int(i)]: [float(v) for v in st] for i, st in zip(order, stats)},
        "warnings": [small_test_warning(len(stats))] if len(stats) < MIN_ITEMS else [],
    }
    if progress:
        print(f"probe {task}: {spec.metric} {result['value']:.4f} after {len(history)} epochs", file=sys.stderr)
    if per_layer:
        result["per_layer"] = []
        for i in range(num_layers):
            h, _ = _fit(spec, splits, layers=slice(i, i + 1), num_layers=1, **kw)  # type: ignore[arg-type]
            st, _ = _evaluate(spec, h, splits["test"], slice(i, i + 1), vocabs)
            result["per_layer"].append({"layer": i, "value": ratio_of_sums(st), "ci": bootstrap_ci(st, seed=seed)})
            if progress:
                print(f"probe {task} layer {i}: {spec.metric} {ratio_of_sums(st):.4f}", file=sys.stderr)
    return result


def probe_with_references(
    task: str,
    *,
    ckpt: str | Path,
    data: str | Path,
    others: Sequence[str] = (),
    references: Sequence[str] = ("codec", "random"),
    **kw: Any,
) -> dict[str, Any]:
    """`run_probe` on the checkpoint, then the same probe on each reference (`codec`: the codec's own summed
    codebook vectors; `random`: a randomly initialised encoder of the same size) and each other checkpoint.
    Returns the checkpoint's result with `references: [{"model", "value", "ci", "paired", ...}]`; `paired` is
    the checkpoint's figure minus the reference's, paired over the test items (`paired.paired_delta`)."""
    result = run_probe(task, data=data, source=feature_source("pretrained", ckpt), **kw)
    refs = []
    sources = [feature_source(k, ckpt, seed=kw.get("seed", 0)) for k in references]
    sources += [feature_source("pretrained", other) for other in others]
    lower = get_task(task).lower_is_better
    for src in sources:
        r = run_probe(task, data=data, source=src, **kw)
        ref = {"model": src.name, "value": r["value"], "ci": r["ci"], "layer_weights": r["layer_weights"]}
        if "per_layer" in r:
            ref["per_layer"] = r["per_layer"]
        ref["paired"] = paired_delta(result["test_items"], r["test_items"], lower_is_better=lower,
                                     seed=kw.get("seed", 0), names=("pretrained", src.name))  # fmt: skip
        refs.append(ref)
    result["references"] = refs
    return result


__all__ = ["probe_features", "probe_with_references", "run_probe"]
