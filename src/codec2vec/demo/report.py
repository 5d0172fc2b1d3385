"""The demo's HTML report and its PNG plots, rendered from `results.json` and the run's `metrics.jsonl`.

`write_report(out, results, metrics=RUN/metrics.jsonl)` writes into `out`:

    curves.png          pre-training loss and target accuracies against steps (train and dev rows)
    per_vs_steps.png    the phone probe's PER at each checkpoint, with its 95% interval
    layer_weights.png   the learned softmax layer weights of each probe of the pre-trained model
    per_layer.png       each task's metric with a head on one layer alone (when the probes ran per layer)
    storage.png         bytes of the source audio, 16-bit PCM and the token store (`codec2vec info --json`)
    report.html         the results table (pretrained / codec / random, value [95% CI]) and the plots; with
                        `out/frontier/frontier.json` (`bench --frontier --corpus OUT --out OUT/frontier`), the
                        storage-quality frontier's section too (its plot, table and verdict)

Every number in the HTML comes from `results` through `fmt` inside `<span class="num" data-key="a.b.0">`, the
key being its path in results.json, so a test can parse each number back and compare it with the file
(matplotlib is imported here only, with the Agg backend).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from codec2vec.common.files import atomic_write

LOWER_IS_BETTER = ("per", "wer", "error", "abx")
MODELS: tuple[str, ...] = ("pretrained", "codec", "random")
MODEL_NAMES = {"pretrained": "pre-trained", "codec": "codec embeddings", "random": "random init"}
TASK_NAMES = {
    "pr": "PR: phone recognition",
    "ks": "KS: keyword spotting",
    "sid": "SID: speaker identification",
    "abx_within": "ABX, within speaker",
    "abx_across": "ABX, across speakers",
}


def fmt(value: Any) -> str:
    """The one way a number is written in the report: integers as they are, other numbers to 4 significant
    digits (tests parse the text back and compare it with `fmt` of the value in results.json)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.4g}"


def lookup(results: Any, key: str) -> Any:
    """The value at a dotted path of results.json ("probes.3.ci.0")."""
    node = results
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _num(results: dict[str, Any], key: str) -> str:
    return f'<span class="num" data-key="{html.escape(key)}">{fmt(lookup(results, key))}</span>'


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def probe_rows(run_results: dict[str, Any], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The `probes` list: one object per (task, model) with task, model, metric, value and ci; ABX gives
    two tasks (`abx_within`, `abx_across`, metric `abx_error`). `run_results`: the demo's stage results."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for model, r in run_results[f"probe-{task}"].items():
            row = {"task": task, "model": model, "metric": r["metric"], "value": r["value"], "ci": r["ci"]}
            extra = ("n_test", "n_train", "epochs", "layer_weights", "per_layer")
            rows.append(row | {k: r[k] for k in extra if r.get(k) is not None})
    for model, r in run_results["abx"].items():
        for side in ("within", "across"):
            row = {
                "task": f"abx_{side}",
                "model": model,
                "metric": "abx_error",
                "value": r[side],
                "ci": r[f"ci_{side}"],
            }
            layers = [{"layer": x["layer"], "value": x[side]} for x in r.get("per_layer", [])]
            rows.append(row | {"layer": r.get("layer")} | ({"per_layer": layers} if layers else {}))
    return rows


# --- plots -------------------------------------------------------------------------------------------------------


def _figure(ncols: int = 1, width: float = 6.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path.with_suffix(".part.png"), dpi=100)
    plt.close(fig)
    path.with_suffix(".part.png").replace(path)
    return path.name


def plot_curves(rows: list[dict[str, Any]], path: Path) -> str:
    """Loss (left) and per-target accuracy (right) against steps, train rows as lines, dev rows as markers."""
    fig, (ax_loss, ax_acc) = _figure(2)
    for split, style in (("train", "-"), ("dev", "o--")):
        sel = [r for r in rows if (r.get("split") == "dev") == (split == "dev")]
        if not sel:
            continue
        ax_loss.plot([r["step"] for r in sel], [r["loss"] for r in sel], style, label=f"{split} loss")
        for key in sorted({k for r in sel for k in r if k.startswith("acc_")}):
            pts = [(r["step"], r[key]) for r in sel if key in r]
            ax_acc.plot(*zip(*pts), style, label=f"{split} {key[4:]}")
    ax_loss.set(xlabel="step", ylabel="loss", title="pre-training loss")
    ax_acc.set(xlabel="step", ylabel="accuracy on masked frames", title="target accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_steps(rows: list[dict[str, Any]], path: Path) -> str:
    """The phone probe's metric at each checkpoint with its confidence interval."""
    fig, (ax,) = _figure()
    steps = [r["step"] for r in rows]
    values = [r["value"] for r in rows]
    ci = [r["ci"] or [v, v] for v, r in zip(values, rows)]
    err = [[max(0.0, v - c[0]) for v, c in zip(values, ci)], [max(0.0, c[1] - v) for v, c in zip(values, ci)]]
    ax.errorbar(steps, values, yerr=err, fmt="o-", capsize=4)
    metric = rows[0]["metric"] if rows else "PER"
    ax.set(xlabel="pre-training step", ylabel=metric, title=f"phone recognition ({metric}) against pre-training")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_layer_weights(probes: list[dict[str, Any]], path: Path) -> str:
    """The learned softmax layer weights of the pre-trained model's probes, one panel per task."""
    rows = [p for p in probes if p["model"] == "pretrained" and p.get("layer_weights")]
    fig, axes = _figure(max(1, len(rows)), width=3.6)
    for ax, p in zip(axes, rows):
        ax.bar(range(len(p["layer_weights"])), p["layer_weights"], color="tab:blue")
        ax.set(xlabel="layer (0 = input embedding)", ylabel="weight", title=p["task"].upper())
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_per_layer(probes: list[dict[str, Any]], path: Path) -> str:
    """Each task's metric with a head on a single layer of the pre-trained model."""
    rows = [p for p in probes if p["model"] == "pretrained" and p.get("per_layer")]
    fig, axes = _figure(max(1, len(rows)), width=3.2)
    for ax, p in zip(axes, rows):
        values = [x["value"] if isinstance(x, dict) else x for x in p["per_layer"]]
        ax.plot(range(len(values)), values, "o-", color="tab:green")
        title = TASK_NAMES.get(p["task"], p["task"]).split(":")[0]
        ax.set(xlabel="layer (0 = input embedding)", ylabel=p["metric"], title=f"{title}, layer by layer")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_storage(storage: dict[str, Any], path: Path) -> str:
    """Bytes on disk: the source audio files, the same audio as 16-bit PCM, and the token store."""
    fig, (ax,) = _figure(height=3.0)
    names = ["source audio (FLAC)", "16-bit PCM", "token store (Lyra v2)"]
    sizes = [storage["source_bytes"] / 1e6, storage["pcm16_bytes"] / 1e6, storage["bytes"] / 1e6]
    ax.barh(names, sizes, color=["tab:gray", "tab:gray", "tab:orange"])
    ax.set(xlabel="MB", title="storage of the pre-training audio")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


# --- HTML --------------------------------------------------------------------------------------------------------


def compare(a: dict[str, Any], b: dict[str, Any], metric: str) -> str:
    """Words for how probe `a` stands against probe `b` (value and 95% interval; no numbers)."""
    low = lower_is_better(metric)
    better = a["value"] < b["value"] if low else a["value"] > b["value"]
    if a["value"] == b["value"]:
        return "equal"
    if a.get("ci") and b.get("ci"):
        apart = a["ci"][1] < b["ci"][0] or b["ci"][1] < a["ci"][0]
        return f"{'better' if better else 'worse'}, {'beyond' if apart else 'within'} the intervals"
    return "better" if better else "worse"


def _cell(results: dict[str, Any], i: int, best: bool) -> str:
    p = results["probes"][i]
    text = _num(results, f"probes.{i}.value")
    if p.get("ci"):
        text += f" [{_num(results, f'probes.{i}.ci.0')}, {_num(results, f'probes.{i}.ci.1')}]"
    return f"<td class='{'best' if best else ''}'>{text}</td>"


def results_table(results: dict[str, Any]) -> str:
    """One row per task: the three models' value [95% CI], the best in bold, pre-trained against random."""
    probes = results["probes"]
    head = "".join(f"<th>{MODEL_NAMES[m]}</th>" for m in MODELS)
    lines = [f"<table id='results'><tr><th>task</th><th>metric</th>{head}<th>pre-trained vs random</th></tr>"]
    for task in dict.fromkeys(p["task"] for p in probes):
        idx = {p["model"]: i for i, p in enumerate(probes) if p["task"] == task}
        metric = probes[next(iter(idx.values()))]["metric"]
        pick = min if lower_is_better(metric) else max
        best = pick(idx, key=lambda m: probes[idx[m]]["value"])
        cells = "".join(_cell(results, idx[m], m == best) if m in idx else "<td>-</td>" for m in MODELS)
        verdict = (
            compare(probes[idx["pretrained"]], probes[idx["random"]], metric)
            if {"pretrained", "random"} <= set(idx)
            else "-"
        )
        arrow = "lower is better" if lower_is_better(metric) else "higher is better"
        lines.append(
            f"<tr><td>{html.escape(TASK_NAMES.get(task, task))}</td><td>{html.escape(metric)} ({arrow})</td>{cells}<td>{verdict}</td></tr>"
        )
    return "\n".join(lines + ["</table>"])


def _rows_table(results: dict[str, Any], key: str, columns: Sequence[str], header: Sequence[str]) -> str:
    rows = lookup(results, key)
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i in range(len(rows)):
        cells = []
        for col in columns:
            if col == "ci" and not rows[i].get("ci"):
                cells.append("-")
            elif col == "ci":
                cells.append(f"[{_num(results, f'{key}.{i}.ci.0')}, {_num(results, f'{key}.{i}.ci.1')}]")
            else:
                cells.append(_num(results, f"{key}.{i}.{col}"))
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _pairs(results: dict[str, Any], key: str, names: dict[str, str]) -> str:
    node = lookup(results, key)
    items = [f"{html.escape(label)} {_num(results, f'{key}.{k}')}" for k, label in names.items() if k in node]
    return " · ".join(items)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: left; }
th { background: #eef; } td.best { font-weight: bold; background: #efe; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
.note { color: #555; font-size: 0.9em; }
"""


def render_html(results: dict[str, Any], images: dict[str, str]) -> str:
    """The report page (images: plot name -> PNG file name beside the page)."""
    img = {k: f"<img src='{html.escape(v)}' alt='{html.escape(k)}'>" for k, v in images.items()}
    settings = _pairs(
        results, "settings", {"hours": "hours", "speakers": "speakers", "degraded": "share degraded", "snr": "SNR (dB)",
                              "steps": "pre-training steps", "seed": "seed"}
    )  # fmt: skip
    splits = "".join(
        f"<li>{html.escape(t.upper())}: {_pairs(results, f'corpus.splits.{t}', {'train': 'train', 'dev': 'dev', 'test': 'test'})}</li>"
        for t in results["corpus"]["splits"]
    )
    storage = _pairs(
        results, "storage", {"utterances": "utterances", "hours": "hours", "kbps": "kbps",
                             "ratio_to_source": "x smaller than the source files", "ratio_to_pcm16": "x smaller than PCM"}
    )  # fmt: skip
    timings = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_num(results, f'stage_seconds.{k}')}</td></tr>"
        for k in results["stage_seconds"]
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>codec2vec demo report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>codec2vec demo report</h1>",
        f"<p>Synthetic corpus (eSpeak NG): {settings}.</p><ul>{splits}</ul>",
        f"<h2>Probes (value [{_num(results, 'ci_level')} bootstrap interval])</h2>",
        "<p class='note'>Frozen upstream, learned softmax-weighted sum of layers, light heads; codec embeddings = the "
        "codec's summed codebook vectors without the Transformer; random init = the same model untrained.</p>",
        results_table(results),
        "<h2>Phone recognition against pre-training steps</h2>",
        img.get("per_vs_steps", ""),
        _rows_table(results, "per_vs_steps", ("step", "value", "ci"), ("step", "PER", "interval")),
        "<h2>Pre-training curves</h2>",
        img.get("curves", ""),
        "<h2>Where the information lives</h2>",
        img.get("layer_weights", ""),
        img.get("per_layer", ""),
        "<h2>Storage</h2>",
        f"<p>{storage}</p>",
        img.get("storage", ""),
        frontier_section(results, images.get("frontier", "")),
        "<h2>Stage times (s)</h2>",
        f"<table id='timings'><tr><th>stage</th><th>seconds</th></tr>{timings}</table>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


FRONTIER_METRICS = (("per", "PER"), ("abx_error_across", "ABX across"), ("abx_error_within", "ABX within"),
                    ("accuracy", "SID acc"))  # fmt: skip


def frontier_section(results: dict[str, Any], image: str) -> str:
    """The storage-quality frontier (`bench --frontier --corpus OUT --out OUT/frontier`, read into
    `results["frontier"]`): its plot, one row per point and recipe row (kbps, metrics with intervals, CPU seconds)
    and its verdict, quoted as frontier.json words it; "" when it was not run."""
    fr = results.get("frontier")
    if not fr:
        return ""
    head = "".join(f"<th>{html.escape(n)}</th>" for _, n in FRONTIER_METRICS)
    rows = []
    for group in ("points", "recipes"):
        for i, p in enumerate(fr.get(group, [])):
            at = f"frontier.{group}.{i}"
            cells = "".join(
                f"<td>{_num(results, f'{at}.metrics.{k}.mean')} [{_num(results, f'{at}.metrics.{k}.ci.0')}, "
                f"{_num(results, f'{at}.metrics.{k}.ci.1')}]</td>" if p["metrics"].get(k) else "<td>-</td>"
                for k, _ in FRONTIER_METRICS
            )  # fmt: skip
            rows.append(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{_num(results, f'{at}.kbps')}</td>{cells}<td>"
                        f"{_num(results, f'{at}.train_cpu_seconds')} / {_num(results, f'{at}.data_seconds')}</td></tr>")  # fmt: skip
    return "\n".join([
        "<h2>Storage-quality frontier</h2>",
        f"<p class='note'>Each input pre-trained for the same budget ({_num(results, 'frontier.budget.amount')} "
        f"{html.escape(str(fr['budget']['unit']))}, {_num(results, 'frontier.seeds')} seeds); mean [bootstrap interval "
        "over test items and seeds]; kbps of every file the input keeps.</p>",
        f"<img src='{html.escape(image)}' alt='frontier'>" if image else "",
        f"<table id='frontier'><tr><th>input</th><th>kbps</th>{head}<th>train / data CPU s</th></tr>{''.join(rows)}</table>",
        f"<blockquote id='frontier-verdict'>{html.escape(str(fr.get('verdict', '')))}</blockquote>",
    ])  # fmt: skip


def read_frontier(out: Path) -> tuple[dict[str, Any] | None, str]:
    """`out/frontier/frontier.json` and its plot's path relative to `out`, when the frontier was run there."""
    path = out / "frontier" / "frontier.json"
    if not path.is_file():
        return None, ""
    image = "frontier/frontier.png" if (out / "frontier" / "frontier.png").is_file() else ""
    return json.loads(path.read_text()), image


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_report(out: str | Path, results: dict[str, Any], *, metrics: str | Path | None = None) -> Path:
    """Write the plots and `out/report.html`; returns the page's path."""
    out = Path(out)
    images = {"per_vs_steps": plot_steps(results["per_vs_steps"], out / "per_vs_steps.png")}
    rows = read_metrics(Path(metrics)) if metrics else []
    if rows:
        images["curves"] = plot_curves(rows, out / "curves.png")
    if any(p.get("layer_weights") for p in results["probes"]):
        images["layer_weights"] = plot_layer_weights(results["probes"], out / "layer_weights.png")
    if any(p.get("per_layer") for p in results["probes"]):
        images["per_layer"] = plot_per_layer(results["probes"], out / "per_layer.png")
    images["storage"] = plot_storage(results["storage"], out / "storage.png")
    frontier, images["frontier"] = read_frontier(out)
    page = out / "report.html"
    atomic_write(page, render_html(results | ({"frontier": frontier} if frontier else {}), images))
    return page
