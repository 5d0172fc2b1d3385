"""Dev evaluation of a pre-training run: masked loss and accuracy per target over the fixed dev batches, summed
over ranks, every `train.eval_every` steps and at the last step (a `split: "dev"` metrics row)."""

from __future__ import annotations

import torch

from codec2vec.pretrain.pretrainer import TargetSums
from codec2vec.pretrain.state import Run


def maybe_evaluate(run: Run) -> None:
    """Dev loss and accuracy every `eval_every` steps and at the end (a `split: "dev"` metrics row)."""
    assert run.log is not None
    tr = run.cfg.train
    if not run.dev_plan or not ((tr.eval_every and run.step % tr.eval_every == 0) or run.last_step):
        return
    dev = evaluate(run)
    run.last_dev = {"step": run.step, "split": "dev", **dev}
    run.log.write(run.last_dev, "dev")
    accs = " ".join(f"acc_{n} {dev[f'acc_{n}']:.3f}" for n in run.names)
    run.log.line(f"pretrain: step {run.step} dev loss {dev['loss']:.4f} {accs}")  # on a terminal too


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Masked loss and accuracy per target over the fixed dev batches (summed over ranks)."""
    total = TargetSums.zeros(run.names)
    was_training = run.model.training
    run.model.eval()
    batches = run.dev_reader(run.dev_store, run.dev_plan, run.rank, run.world)
    for batch in batches:
        if batch is not None:  # None: this rank has no rows in this batch
            with run.autocast():
                total.add(run.model(run.model.prepare(batch).to(run.device)).sums())
    run.model.train(was_training)
    return total.all_reduce(run.world, run.device).row(run.weights)
