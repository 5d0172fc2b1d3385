"""Verbs of evaluation: bench, extract, probe, demo."""

from __future__ import annotations

import argparse
import os

from codec2vec.cli.common import PROBE_TASKS, emit
from codec2vec.cli.flags import add_options, add_verb, from_args

# --- bench (bench/) ------------------------------------------------------------------------------------


def add_bench(p: argparse.ArgumentParser) -> None:
    from codec2vec.bench import BenchOptions
    from codec2vec.bench.frontier import FrontierOptions
    from codec2vec.bench.quality import QualityOptions

    p.add_argument("src", nargs="*", help="audio files, folders or manifests (default: a synthetic corpus)")
    add_options(p, BenchOptions)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    q = p.add_argument_group("equal-compute quality (--quality; bench/quality.py)")
    q.add_argument("--quality", action="store_true", help="pre-train each model for the same compute, probe")
    add_options(q, QualityOptions, sparse=True)  # unset: the full or the --quick setting's value
    f = p.add_argument_group("storage-quality frontier (--frontier; bench/frontier.py; --quality's flags too)")
    f.add_argument("--frontier", action="store_true", help="codec tokens vs FLAC/Opus audio at equal compute, probed")
    add_options(f, FrontierOptions, sparse=True)  # its own fields; the shared ones are --quality's flags


def cmd_bench(args: argparse.Namespace) -> int:
    from codec2vec.bench import BenchOptions, format_report, run_bench
    from codec2vec.bench.quality import QualityOptions, format_quality, run_quality

    if args.frontier:
        return _frontier(args)
    if args.quality:
        base = QualityOptions.quick() if args.quick else QualityOptions()
        quality = run_quality(from_args(QualityOptions, args, base), progress=not args.json)
        emit(args.json, quality, format_quality)
        return 0
    emit(args.json, run_bench(args.src, from_args(BenchOptions, args), progress=not args.json), format_report)
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from codec2vec.bench.frontier import FrontierOptions, run_frontier
    from codec2vec.bench.frontier_report import format_frontier

    opts = from_args(FrontierOptions, args, FrontierOptions.quick() if args.quick else FrontierOptions())
    if opts.recipes == ["none"]:
        opts.recipes = []
    result = run_frontier(opts, progress=not args.json)
    emit(args.json, result, format_frontier)
    return 0


# --- extract / probe (features/, probe/) ------------------------------------------------------------


def add_extract(p: argparse.ArgumentParser) -> None:
    from codec2vec.features.upstream import ExtractOptions

    add_verb(p, ExtractOptions, {
        "ckpt": dict(help="checkpoint directory or run directory (its newest checkpoint)"),
        "src": dict(nargs="+", help="a token store, or audio files, folders (recursive) or manifests"),
        "--out": dict(required=True, help="feature folder (created or appended to; reruns skip done items)"),
    })  # fmt: skip


def cmd_extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.features.upstream import ExtractOptions, extract_to_dir

    o = from_args(ExtractOptions, args)
    summary = extract_to_dir(
        args.ckpt, args.src, Path(args.out), layers=o.layers, codec_path=o.codec_path, progress=not args.json,
        fmt=o.format,
    )  # fmt: skip
    emit(args.json, summary, _extract_text, stderr=True)
    return 3 if summary["rejected"] else 0  # as tokenize: finished, but some inputs could not be used


def _extract_text(summary: dict) -> str:
    lines = [
        f"{summary['out']}: {summary['utterances']} utterances, {summary['frames']} frames, layers {summary['layers']}, "
        f"dim {summary['dim']} ({summary['extracted']} new, {summary['skipped_already_done']} already there)"
    ]
    return "\n".join(lines + [f"rejected: {r['path']}: {r['reason']}" for r in summary["rejects"][:20]])


def add_probe(p: argparse.ArgumentParser) -> None:
    from codec2vec.probe.command import ProbeOptions

    required = {"required": True}
    task = dict(choices=PROBE_TASKS, help="a SUPERB-style head, or abx (label free)")
    ckpt = dict(required, help="checkpoint directory or run directory")
    data = dict(required, help="task folder (train/dev/test.jsonl, meta.json)")
    add_verb(p, ProbeOptions, {"task": task, "--ckpt": ckpt, "--data": data}, json="the result")


def cmd_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.probe.command import ProbeOptions, format_result, probe_command

    o = from_args(ProbeOptions, args)
    result = probe_command(
        args.task, ckpt=args.ckpt, data=args.data, references=o.references, others=o.other, per_layer=o.per_layer,
        seed=o.seed, max_epochs=o.max_epochs, cache_dir=Path(o.cache_dir) if o.cache_dir else None, store=o.store,
        progress=not args.json, layer=o.layer, items=o.items, protocol=o.protocol,
    )  # fmt: skip
    emit(args.json, result, format_result)
    return 0


# --- demo (demo/stages.py, demo/report.py) ---------------------------------------------------------------------------


def add_demo(p: argparse.ArgumentParser) -> None:
    from codec2vec.demo import DemoSettings

    p.add_argument("--out", required=True, help="folder for the corpus, store, run, results.json and report.html")
    p.add_argument("--small", action="store_true", help="the tests' setting: a few minutes instead of ~20")
    p.add_argument("--json", action="store_true", help="print results.json's probes as JSON")
    s = p.add_argument_group("settings (unset: the full or the --small setting's value, or CODEC2VEC_DEMO_<SETTING>)")
    add_options(s, DemoSettings, sparse=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from codec2vec.demo import DemoSettings, run_demo, settings_from_env

    settings = from_args(DemoSettings, args, settings_from_env(DemoSettings.small() if args.small else DemoSettings()))
    results = run_demo(args.out, settings, progress=not args.json)
    emit(args.json, {"report": os.path.join(args.out, "report.html"), "probes": results["probes"]})
    return 0
