"""Verbs of evaluation: bench, extract, probe, demo."""

from __future__ import annotations

import argparse
import os
import sys

from codec2vec.cli.common import PROBE_TASKS, print_json

# --- bench (bench/) ------------------------------------------------------------------------------------


def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="*", help="audio files, folders or manifests (default: a synthetic corpus)")
    p.add_argument("--out", default="", help="keep stores, FLAC files, bench.json and bench.png here")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny models, one step, no DAC (--quality: 2 steps each)"
    )
    p.add_argument("--sizes", default="tiny,base", help="model presets, comma-separated")
    p.add_argument("--frontends", default="codec,waveform,mel", help="front ends, comma-separated")
    p.add_argument("--batch-seconds", type=float, default=20.0, help="audio seconds per step (all front ends)")
    p.add_argument("--crop-seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per configuration")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--synth-hours", type=float, default=0.1, help="size of the corpus made when no SRC is given")
    p.add_argument("--no-dac", action="store_true", help="skip the DAC-16k layout store")
    p.add_argument("--parts", default="storage,reads,throughput", help="what to measure (storage always runs)")
    p.add_argument("--dac-seconds", type=float, default=60.0, help="audio the DAC layout encodes (slow on CPU)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    q = p.add_argument_group("equal-compute quality (--quality; bench/quality.py)")
    q.add_argument("--quality", action="store_true", help="pre-train each model for the same compute, probe")
    q.add_argument("--budget", default="steps", choices=["steps", "cpu"], help="equal optimizer steps or CPU time")
    q.add_argument("--budget-steps", type=int, default=None, help="--budget steps: optimizer steps per run (100)")
    q.add_argument("--budget-minutes", type=float, default=None, help="--budget cpu: CPU minutes per run (1)")
    q.add_argument("--seeds", type=int, default=None, help="pre-trainings per model and recipe (3)")
    q.add_argument("--no-control", action="store_true", help="skip the same-targets control runs")
    q.add_argument("--corpus", default="", help="an existing `codec2vec demo --out` folder (no synth/tokenize)")
    f = p.add_argument_group("storage-quality frontier (--frontier; bench/frontier.py; --quality's budget flags)")
    f.add_argument("--frontier", action="store_true", help="codec tokens vs FLAC/Opus audio at equal compute, probed")
    f.add_argument("--recipes", default=None, help="codec recipe rows, comma-separated, or none (default: all)")


def run_bench(args: argparse.Namespace) -> int:
    from codec2vec.bench import BenchOptions, format_report, run_bench

    if args.frontier:
        return _run_frontier(args)
    if args.quality:
        return _run_quality(args)
    opts = BenchOptions(
        out=args.out,
        quick=args.quick,
        sizes=[s for s in args.sizes.split(",") if s],
        frontends=[f for f in args.frontends.split(",") if f],
        batch_seconds=args.batch_seconds,
        crop_seconds=args.crop_seconds,
        steps=args.steps,
        threads=args.threads,
        device=args.device,
        synth_hours=args.synth_hours,
        dac=not args.no_dac,
        dac_seconds=args.dac_seconds,
        parts=[x for x in args.parts.split(",") if x],
    )
    result = run_bench(args.src, opts, progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print(format_report(result))
    return 0


def _budget_kw(args: argparse.Namespace) -> dict:
    """--quality's and --frontier's shared settings from the flags given."""
    kw = dict(
        out=args.out, corpus=args.corpus, threads=args.threads, frontends=[f for f in args.frontends.split(",") if f]
    )
    kw["budget"] = args.budget
    for name in ("budget_steps", "budget_minutes", "seeds"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.no_control:
        kw["control"] = False
    return kw


def _run_quality(args: argparse.Namespace) -> int:
    from codec2vec.bench.quality import QualityOptions, format_quality, run_quality

    kw = _budget_kw(args)
    opts = QualityOptions.quick(**kw) if args.quick else QualityOptions(**kw)  # type: ignore[arg-type]
    result = run_quality(opts, progress=not args.json)
    print_json(result) if args.json else print(format_quality(result))
    return 0


def _run_frontier(args: argparse.Namespace) -> int:
    from codec2vec.bench.frontier import FrontierOptions, run_frontier
    from codec2vec.bench.frontier_report import format_frontier

    kw = _budget_kw(args)
    kw.pop("control", None)
    if args.recipes is not None:
        kw["recipes"] = [] if args.recipes == "none" else [r for r in args.recipes.split(",") if r]
    opts = FrontierOptions.quick(**kw) if args.quick else FrontierOptions(**kw)  # type: ignore[arg-type]
    result = run_frontier(opts, progress=not args.json)
    print_json(result) if args.json else print(format_frontier(result))
    return 0


# --- extract / probe (features/, probe/) -------------------------------------------------------------


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


def run_extract(args: argparse.Namespace) -> int:
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


def run_probe(args: argparse.Namespace) -> int:
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


# --- demo (demo/stages.py, demo/report.py) ---------------------------------------------------------------------------


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the corpus, store, run, results.json and report.html")
    p.add_argument("--small", action="store_true", help="the tests' setting: a few minutes instead of ~20")
    p.add_argument("--config", default="", help="pre-training config (default: the shipped demo.yaml)")
    p.add_argument("--json", action="store_true", help="print results.json's probes as JSON")


def run_demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from codec2vec.demo import DemoSettings, run_demo, settings_from_env

    base = DemoSettings.small() if args.small else DemoSettings()
    settings = settings_from_env(replace(base, config=args.config) if args.config else base)
    results = run_demo(args.out, settings, progress=not args.json)
    if args.json:
        print_json({"report": os.path.join(args.out, "report.html"), "probes": results["probes"]})
    return 0
