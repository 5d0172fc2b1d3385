"""Verbs of evaluation: bench, extract, probe, demo."""

from __future__ import annotations

import argparse
import os
import sys

from codec2vec.cli.common import PROBE_TASKS, print_json
from codec2vec.cli.flags import add_options, from_args

# --- bench (bench/) ------------------------------------------------------------------------------------


def add_bench(p: argparse.ArgumentParser) -> None:
    from codec2vec.bench import BenchOptions
    from codec2vec.bench.quality import QualityOptions

    p.add_argument("src", nargs="*", help="audio files, folders or manifests (default: a synthetic corpus)")
    add_options(p, BenchOptions)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    q = p.add_argument_group("equal-compute quality (--quality; bench/quality.py)")
    q.add_argument("--quality", action="store_true", help="pre-train each model for the same compute, probe")
    add_options(q, QualityOptions, sparse=True)  # unset: the full or the --quick setting's value


def cmd_bench(args: argparse.Namespace) -> int:
    from codec2vec.bench import BenchOptions, format_report, run_bench
    from codec2vec.bench.quality import QualityOptions, format_quality, run_quality

    if args.quality:
        base = QualityOptions.quick() if args.quick else QualityOptions()
        quality = run_quality(from_args(QualityOptions, args, base), progress=not args.json)
        print_json(quality) if args.json else print(format_quality(quality))
        return 0
    result = run_bench(args.src, from_args(BenchOptions, args), progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print(format_report(result))
    return 0


# --- extract / probe (features/, probe/) ------------------------------------------------------------


def add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="checkpoint directory or run directory (its newest checkpoint)")
    p.add_argument("src", nargs="+", help="a token store, or audio files, folders (recursive) or manifests")
    p.add_argument("--out", required=True, help="feature folder (created or appended to; reruns skip done items)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="hidden states to keep (0 = input; default all)")
    p.add_argument("--codec-path", default=None, help="the codec's weights (a local folder or a hub id)")
    p.add_argument(
        "--format", default="features", choices=["features", "npy"], help="npy: OUT/<id>.npy (T, D) float32, one layer"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.features.upstream import extract_to_dir

    summary = extract_to_dir(
        args.ckpt,
        args.src,
        Path(args.out),
        layers=args.layers,
        codec_path=args.codec_path,
        progress=not args.json,
        fmt=args.format,
    )
    if args.json:
        print_json(summary)
    else:
        print(
            f"{args.out}: {summary['utterances']} utterances, {summary['frames']} frames, layers {summary['layers']}, "
            f"dim {summary['dim']} ({summary['extracted']} new, {summary['skipped_already_done']} already there)",
            file=sys.stderr,
        )
        for r in summary["rejects"][:20]:
            print(f"rejected: {r['path']}: {r['reason']}", file=sys.stderr)
    return 3 if summary["rejected"] else 0  # as tokenize: finished, but some inputs could not be used


def add_probe(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=PROBE_TASKS, help="a SUPERB-style head, or abx (label free)")
    p.add_argument("--ckpt", required=True, help="checkpoint directory or run directory")
    p.add_argument("--data", required=True, help="task folder (train/dev/test.jsonl, meta.json)")
    p.add_argument("--store", default=None, help="token store holding the task's utterance ids (default: tokenize)")
    p.add_argument("--references", default="codec,random", help="comma-separated among codec, random; '' for none")
    p.add_argument("--other", nargs="*", default=[], help="other checkpoints probed the same way")
    p.add_argument("--per-layer", action="store_true", help="also fit the head on each layer alone")
    p.add_argument("--protocol", default="ours", choices=["ours", "superb"], help="heads: ours, or s3prl's settings")
    p.add_argument(
        "--layer", type=int, default=None, help="abx: score this layer only (default: every layer, chosen on dev)"
    )
    p.add_argument(
        "--items",
        default="triphone",
        choices=["triphone", "phoneme"],
        help="abx: triphone (ZeroSpeech 2021) or phoneme items",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=100, help="upper bound; training stops early on dev")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $CODEC2VEC_CACHE or ~/.cache/codec2vec)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.probe.command import format_result, probe_command

    cache = Path(args.cache_dir) if args.cache_dir else None
    refs = [r for r in args.references.split(",") if r.strip()]
    result = probe_command(
        args.task, ckpt=args.ckpt, data=args.data, references=refs, others=args.other, per_layer=args.per_layer,
        seed=args.seed, max_epochs=args.max_epochs, cache_dir=cache, store=args.store, progress=not args.json,
        layer=args.layer, items=args.items, protocol=args.protocol,
    )  # fmt: skip
    if args.json:
        print_json(result)
    else:
        print(format_result(result))
    return 0


# --- demo (demo.py, report.py) ---------------------------------------------------------------------------


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
    if args.json:
        print_json({"report": os.path.join(args.out, "report.html"), "probes": results["probes"]})
    return 0
