"""`codec2vec probe`: one task (or ABX) on a checkpoint and its reference points, as a dict and as text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from codec2vec.common.errors import ConfigError
from codec2vec.common.options import option
from codec2vec.features.sources import KINDS, feature_source
from codec2vec.probe.abx import abx, require_test_items
from codec2vec.probe.paired import abx_warnings, format_delta, paired_delta
from codec2vec.probe.runner import check_epochs, probe_with_references
from codec2vec.probe.tasks import check_task_folder, get_task


@dataclass(frozen=True)
class ProbeOptions:
    """How `codec2vec probe` probes (its flags, made from these fields by `cli/flags.py`)."""

    store: str | None = option(None, help="token store holding the task's utterance ids (default: tokenize)")
    references: list[str] = option(
        factory=lambda: ["codec", "random"], help="comma-separated among codec, random; '' for none"
    )
    other: list[str] = option(factory=list, nargs="*", help="other checkpoints probed the same way")
    per_layer: bool = option(False, help="also fit the head on each layer alone")
    protocol: str = option("ours", choices=("ours", "superb"), help="heads: ours, or s3prl's settings")
    layer: int | None = option(None, help="abx: score this layer only (default: every layer, chosen on dev)")
    items: str = option(
        "triphone", choices=("triphone", "phoneme"), help="abx: triphone (ZeroSpeech 2021) or phoneme items"
    )
    seed: int = option(0)
    max_epochs: int = option(100, help="upper bound; training stops early on dev")
    cache_dir: str | None = option(None, help="feature cache (default $CODEC2VEC_CACHE or ~/.cache/codec2vec)")


def probe_command(
    task: str,
    *,
    ckpt: str | Path,
    data: str | Path,
    references: Sequence[str] = ("codec", "random"),
    others: Sequence[str] = (),
    **kw: Any,
) -> dict[str, Any]:
    """The CLI's result: `task`, `metric`, `value`, `ci`, `layer_weights` (ABX: the per-layer errors' layer),
    and `references` (one object per reference model, same keys)."""

    bad = [r for r in references if r not in KINDS[1:]]
    if bad:
        raise ConfigError(f"--references {','.join(bad)}: choose among codec, random")
    if task == "abx" and kw.get("protocol", "ours") != "ours":
        raise ConfigError(f"--protocol {kw['protocol']}: only for the SUPERB heads (abx is scored as ZeroSpeech does)")
    if task != "abx":
        get_task(task)  # an unknown task fails before any feature is extracted
        check_epochs(kw.get("max_epochs", 1))
        kw.pop("items", None)
        if kw.get("layer") is not None:
            raise ConfigError(f"--layer: only for abx (task {task} learns a weighted sum; --per-layer fits each layer)")
        kw.pop("layer", None)
    check_task_folder(task, data)  # so does a folder of another task (no `phones` for pr...)
    if task != "abx":
        return _finite(probe_with_references(task, ckpt=ckpt, data=data, others=others, references=references, **kw))

    for key in ("max_epochs", "per_layer", "protocol"):  # abx trains nothing and always scores every layer
        kw.pop(key, None)
    require_test_items(data, kw.get("items", "triphone"))  # before any checkpoint is read
    result = abx(data, source=feature_source("pretrained", ckpt), **kw)
    result["warnings"] = abx_warnings(result)
    sources = [feature_source(k, ckpt, seed=kw.get("seed", 0)) for k in references]
    sources += [feature_source("pretrained", o) for o in others]
    result["references"] = []
    for s in sources:
        # the codec's embeddings are one layer: `--layer` picks among the Transformer models' layers only
        ref = abx(data, source=s, **{**kw, **({"layer": None} if s.kind == "codec" else {})})
        paired = {side: paired_delta(speaker_items(result, side), speaker_items(ref, side), lower_is_better=True,
                                     seed=kw.get("seed", 0), names=("pretrained", s.name), min_items=0) for side in SIDES}  # fmt: skip
        result["references"].append({"model": s.name, **_abx_summary(ref), "paired": paired})
    return _finite(result)


SIDES = ("across", "within")


def speaker_items(r: dict[str, Any], side: str) -> dict[str, dict[str, float]]:
    """An ABX result's errors on one side as paired-bootstrap items `{speaker: {phone pair: error}}`."""
    return dict(r.get("speakers", {}).get(side, {}))


def _finite(obj: Any) -> Any:
    """NaN (an empty test set, no ABX cell) becomes None, so `--json` stays strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _abx_summary(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("value", "ci", "within", "across", "ci_within", "ci_across", "layer", "per_layer")
    return {k: r[k] for k in keep if k in r}


def _fmt(value: float | None, ci: Sequence[float | None]) -> str:
    """Rates and accuracies in percent, with the interval."""
    lo, hi = ci
    if value is None or lo is None or hi is None:
        return "   n/a (no test item)"
    return f"{value * 100:6.2f}% [{lo * 100:.2f}, {hi * 100:.2f}]"


def format_result(result: dict[str, Any]) -> str:
    """A small text table: the checkpoint, then each reference, with 95% intervals."""
    metric = result["metric"]
    lines = [f"{result['task']}: {metric} (95% bootstrap interval; {result.get('n_test', '?')} test utterances)"]
    if result["task"] == "abx":
        lines[0] = f"abx: {metric} ({result.get('items')} items, {result.get('n_items')}; 95% interval over speakers)"
    rows = [("pretrained", result)] + [(r["model"], r) for r in result.get("references", [])]
    for name, r in rows:
        if result["task"] == "abx":
            lines.append(
                f"  {name:<12} across {_fmt(r['across'], r['ci_across'])}  within {_fmt(r['within'], r['ci_within'])}"
                f"  (layer {r['layer']})"
            )
        else:
            lines.append(f"  {name:<12} {_fmt(r['value'], r['ci'])}")
    for r in result.get("references", []):
        paired = r.get("paired") or {}
        over = "speakers" if result["task"] == "abx" else "test items"
        for side, d in paired.items() if result["task"] == "abx" else [("", paired)] if paired else []:
            lines.append(f"  paired{' ' + side if side else ''}: {format_delta(d)} (points; 95% interval over {over})")
    lines += [f"  warning: {w}" for w in result.get("warnings", [])]
    if result.get("layer_weights") and result["task"] != "abx":
        lines.append("  layer weights: " + " ".join(f"{w:.3f}" for w in result["layer_weights"]))
    for p in result.get("per_layer", []):
        if result["task"] == "abx":
            lines.append(
                f"  layer {p['layer']:>2}: across {_fmt(p['across'], p['ci_across'])}  within {_fmt(p['within'], p['ci_within'])}"
            )
        else:
            lines.append(f"  layer {p['layer']:>2}: {_fmt(p['value'], p['ci'])}")
    return "\n".join(lines)


__all__ = ["format_result", "probe_command"]
