"""What `bench --frontier` reports (bench/frontier.py): per point and recipe row the mean over seeds with a 95%
interval (a bootstrap over the test items, ABX: speakers, and the seeds, as probe/paired.py resamples), paired
deltas, the generated verdict paragraph, the text tables and `frontier.png`.

Paired deltas (A - B, probe/paired.py) are computed for every pair of frontier points of different input
kinds (codec, mel, waveform) on each metric, and for every recipe row against today's recipe (`codec-46`).
The verdict names a difference only where its paired 95% interval excludes 0:
- at equal compute: the kinds at their full-quality inputs (`codec-46`, `mel-flac`, `waveform-flac`), since
  every run has the same budget;
- at equal storage: pairs of points of different kinds whose kbps lie within `STORAGE_FACTOR` of each other
  (it names the pairs compared);
- recipe rows that beat or lose to today's recipe;
and closes with what the codec store buys: its size against FLAC, and that pre-training needs tokens only.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codec2vec.bench.compare import METRICS
from codec2vec.probe.paired import MIN_ITEMS, paired_delta, resampled_stat, stack_items

STORAGE_FACTOR = 1.5  # points whose kbps differ by less than this factor count as equal storage
HEADLINE = ("codec-46", "mel-flac", "waveform-flac")  # each input kind at full quality: the equal-compute verdict
NAMES = dict(METRICS)
PLOT_METRICS = (("per", "PER"), ("abx_error_across", "ABX across"), ("accuracy", "SID acc"))
COLORS = {"codec": "C0", "mel": "C1", "waveform": "C2"}


def interval(seeded: Sequence[Any], *, n: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """95% percentile-bootstrap interval of one model's figure (mean over seeds) over its items and seeds:
    `seeded` a list (one per seed) of per-item stats as probe/paired.py takes them."""
    x, _, ids = stack_items(list(seeded), list(seeded))
    if not ids:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    s = len(x)
    seeds = rng.integers(0, s, size=(n, s)) if s > 1 else np.zeros((n, 1), dtype=np.int64)
    draws = resampled_stat(x, seeds, rng.integers(0, len(ids), size=(n, len(ids))))
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def _by_point(rows: list[dict[str, Any]], items: dict[tuple[str, str], Any], alias: dict[str, str]):  # type: ignore[no-untyped-def]
    """name -> metric -> (rows by seed, items by seed) of the runs that point uses."""
    out: dict[str, dict[str, tuple[list[dict[str, Any]], list[Any]]]] = {}
    for name, src in alias.items():
        for metric, _ in METRICS:
            xs = sorted((r for r in rows if r["recipe"] == src and r["metric"] == metric), key=lambda r: r["seed"])
            if xs:
                out.setdefault(name, {})[metric] = (xs, [items[(r["run"], metric)] for r in xs])
    return out


def _row(p: Any, group: dict[str, Any], runs: list[dict[str, Any]], record: dict[str, Any], alias: str) -> dict:
    mine = [r for r in runs if r["point"] == alias]
    out: dict[str, Any] = {
        "name": p.name, "kind": p.model, "storage": p.storage, "kmeans_source": p.source,
        "overrides": list(p.overrides), "runs_of": alias, "kbps": record["kbps"], "store_bytes": record["bytes"],
        "seeds": [r["seed"] for r in mine], "metrics": {},
        "cpu_seconds": float(np.mean([r["cpu_seconds"] for r in mine])) if mine else 0.0,
        "data_seconds": float(np.mean([r["data_seconds"] for r in mine])) if mine else 0.0,
        "train_cpu_seconds": float(np.mean([r["train_cpu_seconds"] for r in mine])) if mine else 0.0,
    }  # fmt: skip
    for metric, (xs, its) in group.items():
        vals = np.array([x["value"] for x in xs], dtype=np.float64)
        out["metrics"][metric] = {"values": vals.tolist(), "mean": float(vals.mean()), "ci": interval(its),
                                  "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}  # fmt: skip
    return out


def _delta(a: str, b: str, metric: str, groups: dict[str, Any], seed: int) -> dict[str, Any]:
    abx = metric.startswith("abx")
    d = paired_delta(groups[a][metric][1], groups[b][metric][1], lower_is_better=metric != "accuracy", seed=seed,
                     names=(a, b), min_items=0 if abx else MIN_ITEMS)  # fmt: skip
    return {"metric": metric, "resampled": "speakers" if abx else "test items"} | d


def assemble(rows: list[dict[str, Any]], runs: list[dict[str, Any]], *, points: list[Any], recipes: list[Any],
             alias: dict[str, str], records: dict[str, Any], opts: Any) -> dict[str, Any]:  # fmt: skip
    """Probe rows (with per-item stats) and runs -> {"points", "recipes", "paired", "verdict", "stores", "runs",
    "rows", "budget", "seeds", "warnings"}."""
    items = {(x["run"], x["metric"]): x.pop("items") for x in rows}
    groups = _by_point(rows, items, alias)
    table = {p.name: _row(p, groups.get(p.name, {}), runs, records[p.storage], alias[p.name]) for p in points + recipes}
    paired = []
    for a, b in combinations(points, 2):
        if a.model == b.model:
            continue
        ka, kb = table[a.name]["kbps"], table[b.name]["kbps"]
        same = max(ka, kb) / max(min(ka, kb), 1e-9) <= STORAGE_FACTOR
        for metric, _ in METRICS:
            if metric in groups.get(a.name, {}) and metric in groups.get(b.name, {}):
                paired.append({"kind": "frontier", "kbps": [ka, kb], "equal_storage": same}
                              | _delta(a.name, b.name, metric, groups, opts.seed))  # fmt: skip
    for r in recipes:
        for metric, _ in METRICS:
            if metric in groups.get(r.name, {}) and metric in groups.get("codec-46", {}):
                paired.append({"kind": "recipe"} | _delta(r.name, "codec-46", metric, groups, opts.seed))
    warnings = sorted({w for x in rows for w in x.get("warnings", [])})
    return {
        "points": [table[p.name] for p in points],
        "recipes": [table[r.name] for r in recipes],
        "paired": paired,
        "verdict": verdict_paragraph(paired, [table[p.name] for p in points]),
        "stores": records,
        "runs": runs,
        "rows": rows,
        "budget": {
            "kind": opts.budget,
            "amount": opts.amount,
            "unit": "steps" if opts.budget == "steps" else "CPU seconds",
            "interleaved": True,
        },  # fmt: skip
        "seeds": opts.seeds,
        "warnings": warnings,
    }


def _win(d: dict[str, Any], kbps: bool = False) -> str:
    best = d["verdict"][: -len(" better")]
    worse = d["b"] if best == d["a"] else d["a"]
    lo, hi = d["ci"]
    where = f" at {d['kbps'][0]:.1f} vs {d['kbps'][1]:.1f} kbps" if kbps else ""
    return f"{best} beats {worse} on {NAMES[d['metric']]}{where} ({d['a']} - {d['b']} {d['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}])"


def _wins(ds: list[dict[str, Any]], kbps: bool = False) -> list[str]:
    """Only deltas whose interval excludes 0 (paired_delta's verdict "<name> better")."""
    out = []
    for d in ds:
        lo, hi = d["ci"]
        if d["verdict"].endswith(" better") and np.isfinite(lo) and np.isfinite(hi) and not lo <= 0.0 <= hi:
            out.append(_win(d, kbps))
    return out


def verdict_paragraph(paired: list[dict[str, Any]], points: list[dict[str, Any]]) -> str:
    """The generated verdict: wins at equal compute, at equal storage and of the recipe rows, each only where the
    paired 95% interval excludes 0; then what the codec store buys."""
    front = [d for d in paired if d.get("kind") == "frontier"]
    head = [d for d in front if d["a"] in HEADLINE and d["b"] in HEADLINE]
    same = [d for d in front if d.get("equal_storage")]
    parts = []
    w = _wins(head)
    parts.append("At equal compute (every run the same budget; codec-46, mel-flac, waveform-flac): "
                 + ("; ".join(w) if w else "no input beats another beyond its 95% paired interval") + ".")  # fmt: skip
    pairs = sorted({f"{d['a']}/{d['b']}" for d in same})
    if not pairs:
        parts.append(f"At equal storage: no codec and audio points lie within {STORAGE_FACTOR:g}x of each "
                     "other's kbps, so none is compared.")  # fmt: skip
    else:
        w = _wins(same, kbps=True)
        parts.append(f"At equal storage (kbps within {STORAGE_FACTOR:g}x: {', '.join(pairs)}): "
                     + ("; ".join(w) if w else "no difference beyond the 95% paired intervals") + ".")  # fmt: skip
    rec = [d for d in paired if d.get("kind") == "recipe"]
    if rec:
        w = _wins(rec)
        parts.append("Against today's codec recipe (codec-46): "
                     + ("; ".join(w) if w else "no recipe change differs beyond its 95% paired interval") + ".")  # fmt: skip
    parts.append(_storage_sentence(points))
    return " ".join(parts)


def _storage_sentence(points: list[dict[str, Any]]) -> str:
    kb = {p["name"]: p["kbps"] for p in points}
    flac, codec = kb.get("mel-flac"), {n: k for n, k in kb.items() if n.startswith("codec-")}
    if not flac or not codec:
        return "Pre-training the codec model needs the tokens only: no audio is kept."
    full, low = codec.get("codec-46", max(codec.values())), min(codec.values())
    return (f"The codec store takes {full:.1f} kbps at 46 levels ({flac / full:.0f}x smaller than FLAC's {flac:.1f} "
            f"kbps; {low:.1f} kbps, {flac / low:.0f}x, at the fewest levels), and pre-training needs the tokens "
            "only, so no audio is kept; tokens are not anonymous, though: the public decoder turns them back into "
            "speech.")  # fmt: skip


def _cell(m: dict[str, Any] | None) -> str:
    return "-" if m is None else f"{m['mean']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"


def format_frontier(r: dict[str, Any]) -> str:
    """The text tables: points (kbps, metrics with intervals, CPU seconds), recipe rows with their paired deltas
    against today's recipe, equal-storage deltas, the verdict."""
    b = r["budget"]
    lines = [f"storage-quality frontier: {b['amount']:g} {b['unit']} of pre-training per run (interleaved), "
             f"{r['seeds']} seed(s); mean [95% interval over items and seeds]", ""]  # fmt: skip
    head = f"{'point':<16} {'kbps':>7}" + "".join(f"  {n:<21}" for _, n in METRICS) + "  train/data CPU s"
    lines.append(head)
    for p in r["points"] + r["recipes"]:
        cells = "".join(f"  {_cell(p['metrics'].get(k)):<21}" for k, _ in METRICS)
        lines.append(f"{p['name']:<16} {p['kbps']:>7.2f}{cells}  {p['train_cpu_seconds']:.1f}/{p['data_seconds']:.1f}")
    lines += ["", "paired deltas (A - B, 95% interval; PER/ABX lower is better, SID higher):"]
    for d in r["paired"]:
        if d["kind"] == "recipe" or d.get("equal_storage") or (d["a"] in HEADLINE and d["b"] in HEADLINE):
            lo, hi = d["ci"]
            tag = "recipe" if d["kind"] == "recipe" else ("storage" if d.get("equal_storage") else "compute")
            lines.append(f"  {tag:<8} {NAMES[d['metric']]:<11} {d['a']}-{d['b']:<16} {d['delta']:+.3f} "
                         f"[{lo:+.3f}, {hi:+.3f}]  {d['verdict']}")  # fmt: skip
    lines += ["", "verdict: " + r["verdict"]] + [f"warning: {w}" for w in r.get("warnings", [])]
    lines.append(f"total {r.get('total_seconds', 0.0):.0f} s")
    return "\n".join(lines)


def plot_frontier(result: dict[str, Any], path: Path) -> None:
    """Quality against kbps (log x), one panel per metric (PER, ABX across, SID), one line per input kind; each
    point's 95% interval as a bar and, along the line, as a shaded band, so that overlapping intervals show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec2vec.common.files import atomic_file

    fig, axes = plt.subplots(1, len(PLOT_METRICS), figsize=(4.4 * len(PLOT_METRICS), 3.9))
    for ax, (metric, title) in zip(axes, PLOT_METRICS):
        for kind, color in COLORS.items():
            pts = sorted((p for p in result["points"] if p["kind"] == kind and metric in p["metrics"]),
                         key=lambda p: p["kbps"])  # fmt: skip
            if not pts:
                continue
            x = np.array([p["kbps"] for p in pts])
            m = np.array([p["metrics"][metric]["mean"] for p in pts])
            lo = np.array([p["metrics"][metric]["ci"][0] for p in pts])
            hi = np.array([p["metrics"][metric]["ci"][1] for p in pts])
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
            ax.errorbar(x, m, yerr=[m - lo, hi - m], color=color, marker="o", capsize=3, label=kind)
            for p, xi, mi in zip(pts, x, m):
                ax.annotate(p["storage"], (xi, mi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.12)
        ax.set_xlabel("kbps of everything stored (log)")
        ax.set_title(f"{title} ({'higher' if metric == 'accuracy' else 'lower'} is better)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    b = result["budget"]
    fig.suptitle(f"equal compute: {b['amount']:g} {b['unit']} per run, {result['seeds']} seed(s); 95% intervals "
                 "(shaded: overlapping bands are not separated)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


__all__ = ["HEADLINE", "STORAGE_FACTOR", "assemble", "format_frontier", "interval", "plot_frontier",
           "verdict_paragraph"]  # fmt: skip
