"""What `bench --quality` reports: per-seed rows summarised (mean, sd over seeds), paired model-vs-model deltas
(probe/paired.py), the text table and the PNG.

A delta is model A minus model B under one recipe on one metric, paired over the test items every seed of
both scored (ABX: over speakers) and over the seeds; its 95% interval decides the verdict: "no difference"
when it covers 0, else the better model.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.probe.paired import MIN_ITEMS, paired_delta

METRICS = (
    ("per", "PER"),
    ("accuracy", "SID acc"),
    ("abx_error_across", "ABX across"),
    ("abx_error_within", "ABX within"),
)
ORDER = ("codec", "mel", "waveform")  # pairs are reported as codec-mel, codec-waveform, mel-waveform


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(recipe, model, metric) -> the per-seed rows, by seed."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for x in sorted(rows, key=lambda x: x["seed"]):
        out.setdefault((x["recipe"], x["model"], x["metric"]), []).append(x)
    return out


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (recipe, model, metric): the per-seed values, their mean and sd (ddof 1; 0 with one seed)."""
    out = []
    for (recipe, model, metric), xs in _groups(rows).items():
        vals = np.array([x["value"] for x in xs], dtype=np.float64)
        out.append({
            "recipe": recipe, "model": model, "task": xs[0]["task"], "metric": metric, "seeds": [x["seed"] for x in xs],
            "values": vals.tolist(), "mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "steps": [x["steps"] for x in xs], "cpu_seconds": [x["cpu_seconds"] for x in xs],
        })  # fmt: skip
    return out


def paired_rows(rows: list[dict[str, Any]], items: dict[tuple[str, str], Any], *, seed: int = 0) -> list[dict]:
    """Every pair of models under each recipe on each metric: paired delta (A - B) with its 95% interval."""
    groups = _groups(rows)
    recipes = sorted({x["recipe"] for x in rows}, key=lambda r: (r != "own", r))
    models = sorted({x["model"] for x in rows}, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))
    out = []
    for recipe in recipes:
        for metric, _ in METRICS:
            for a, b in combinations(models, 2):
                ra, rb = groups.get((recipe, a, metric)), groups.get((recipe, b, metric))
                if not ra or not rb:
                    continue
                d = paired_delta([items[(x["run"], metric)] for x in ra], [items[(x["run"], metric)] for x in rb],
                                 lower_is_better=metric != "accuracy", seed=seed, names=(a, b),
                                 min_items=0 if metric.startswith("abx") else MIN_ITEMS)  # fmt: skip
                unit = "speakers" if metric.startswith("abx") else "test items"
                out.append({"recipe": recipe, "task": ra[0]["task"], "metric": metric, "resampled": unit, **d})
    return out


def verdict_lines(paired: list[dict[str, Any]]) -> list[str]:
    """Per recipe and metric, one sentence: which model beats which beyond its interval, or that none does."""
    out = []
    for recipe in sorted({d["recipe"] for d in paired}, key=lambda r: (r != "own", r)):
        for metric, name in METRICS:
            ds = [d for d in paired if d["recipe"] == recipe and d["metric"] == metric]
            if not ds:
                continue
            wins = []
            for d in ds:
                if d["verdict"].endswith(" better"):
                    best = d["verdict"][: -len(" better")]
                    wins.append(f"{best} beats {d['b'] if best == d['a'] else d['a']}")
            out.append(
                f"{recipe} {name}: " + ("; ".join(wins) if wins else "no model beats another beyond its interval")
            )
    return out


def _cell(s: dict[str, Any] | None) -> str:
    return "-" if s is None else f"{s['mean']:.3f} ± {s['sd']:.3f}"


def format_quality(r: dict[str, Any]) -> str:
    """The human-readable tables of `run_quality`'s result: mean ± sd over seeds per model and recipe, the
    per-seed figures, the paired deltas with their verdicts."""
    b = r["budget"]
    lines = [f"controlled quality: {b['amount']:g} {b['unit']} of pre-training per run (interleaved), "
             f"{r['seeds']} seed(s) per model; {r['fairness']}", ""]  # fmt: skip
    summ = {(s["recipe"], s["model"], s["metric"]): s for s in r["summary"]}
    recipes = sorted({s["recipe"] for s in r["summary"]}, key=lambda x: (x != "own", x))
    models = sorted({s["model"] for s in r["summary"]}, key=lambda m: ORDER.index(m) if m in ORDER else 9)
    lines.append(f"{'recipe':<13} {'model':<9}" + "".join(f"  {name:<15}" for _, name in METRICS))
    for recipe in recipes:
        for m in models:
            lines.append(
                f"{recipe:<13} {m:<9}" + "".join(f"  {_cell(summ.get((recipe, m, k))):<15}" for k, _ in METRICS)
            )
    lines += ["", "per seed (steps, CPU s):"]
    for run in r["runs"]:
        vals = [x for x in r["quality"] if x["run"] == run["run"]]
        figs = " ".join(f"{x['metric']} {x['value']:.3f}" for x in vals)
        lines.append(f"  {run['run']:<26} {run['steps']:>5} {run['cpu_seconds']:>7.0f}  {figs}")
    lines += ["", "paired deltas (A - B, 95% interval; PER/ABX lower is better, SID higher):"]
    for d in r["paired"]:
        lo, hi = d["ci"]
        lines.append(f"  {d['recipe']:<13} {d['metric']:<17} {d['a']}-{d['b']:<9} {d['delta']:+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}]  {d['verdict']}")  # fmt: skip
    lines += ["", "verdicts (95% paired intervals):"] + [f"  {v}" for v in verdict_lines(r["paired"])]
    lines += [f"warning: {w}" for w in r.get("warnings", [])]
    lines.append(f"total {r['total_seconds']:.0f} s; stages: " + ", ".join(f"{k} {v:.0f} s"
                                                                           for k, v in r["stage_seconds"].items()))  # fmt: skip
    return "\n".join(lines)


def plot_quality(result: dict[str, Any], path: Path) -> None:
    """One panel per metric: each (model, recipe)'s mean over seeds, its seeds as dots, sd as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec2vec.common.files import atomic_file

    summ = result["summary"]
    keys = sorted({(s["recipe"], s["model"]) for s in summ}, key=lambda k: (k[0] != "own", k[0], k[1]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 3.8))
    for ax, (metric, title) in zip(axes, METRICS):
        for i, key in enumerate(keys):
            s = next((x for x in summ if (x["recipe"], x["model"]) == key and x["metric"] == metric), None)
            if s is None:
                continue
            color = f"C{ORDER.index(key[1]) if key[1] in ORDER else 3}"
            ax.bar(i, s["mean"], yerr=s["sd"], capsize=4, color=color, alpha=1.0 if key[0] == "own" else 0.5)
            ax.plot([i] * len(s["values"]), s["values"], "k.", markersize=4)
        ax.set_xticks(range(len(keys)), [f"{m}\n{r}" for r, m in keys], fontsize=6)
        ax.set_title(f"{title} ({'higher' if metric == 'accuracy' else 'lower'} is better)", fontsize=9)
    b = result["budget"]
    fig.suptitle(f"equal compute: {b['amount']:g} {b['unit']} per run; mean ± sd over {result['seeds']} seed(s)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


__all__ = ["METRICS", "format_quality", "paired_rows", "plot_quality", "summary_rows", "verdict_lines"]
