"""Verbs of corpora and pre-training: pretrain, synth, corpus, kmeans."""

from __future__ import annotations

import argparse
import sys

from codec2vec.cli.common import TARGET_NAMES, print_json

# --- pretrain (pretrain/config/, pretrain/loop.py) ----------------------------------------------------------------


def add_pretrain(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        help="YAML config (a serialized PretrainConfig), e.g. configs/lyra_tiny.yaml; a shipped one by name: "
        "lyra_tiny, lyra_base, demo, dac16k_base_{reconstruction,clusters,online,combined}, mel_tiny, waveform_tiny",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help=f"key=value: data.store=, run.dir=, train.steps=, targets=a,b with a, b among {', '.join(TARGET_NAMES)}",
    )
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")


def run_pretrain(args: argparse.Namespace) -> int:
    import os

    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.loop import pretrain

    summary = pretrain(load_config(args.config, args.overrides))
    if args.json and int(os.environ.get("RANK", "0")) == 0:
        print_json(summary)
    return 0


# --- synth / corpus (synth.py, corpora.py) ------------------------------------------------------


def add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder: audio/, all.jsonl and one manifest folder per task")
    p.add_argument("--hours", type=float, default=0.2, help="hours of audio over all tasks (approximate)")
    p.add_argument("--speakers", type=int, default=8, help="distinct synthetic voices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr", type=float, default=None, help="add white/pink/brown noise at this SNR (dB)")
    p.add_argument("--reverb", action="store_true", help="convolve with synthesised room impulse responses")
    p.add_argument("--split-by", default="utterance", choices=["utterance", "speaker"],
                   help="speaker: speaker-disjoint splits for every task but SID")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_synth(args: argparse.Namespace) -> int:
    from codec2vec.corpora.synth import SynthOptions, synth_corpus

    options = SynthOptions(
        hours=args.hours, speakers=args.speakers, seed=args.seed, snr=args.snr, reverb=args.reverb,
        split_by=args.split_by, workers=args.workers,
    )  # fmt: skip
    summary = synth_corpus(args.out, options, progress=not args.json)
    if args.json:
        print_json(summary)
    else:
        tasks = ", ".join(f"{t} {sum(n.values())}" for t, n in summary["tasks"].items())
        print(f"{args.out}: {summary['clips']} clips, {summary['hours']:.3f} h ({tasks})", file=sys.stderr)
    return 0


def add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        choices=["librispeech", "speech_commands", "voxceleb1", "fluent_speech_commands", "iemocap", "kaldi", "lhotse"],
    )
    p.add_argument("root", help="the dataset's local folder, in its standard layout (kaldi: a data dir; lhotse: cuts)")
    p.add_argument("--out", required=True, help="folder for the task manifests")
    p.add_argument("--fold", type=int, default=1, help="iemocap: the test session (1..5)")
    p.add_argument("--test-root", default=None, help="speech_commands: the official test set folder")
    p.add_argument("--json", action="store_true")


def run_corpus(args: argparse.Namespace) -> int:
    from codec2vec.corpora import LOADERS

    extra = {"iemocap": {"fold": args.fold}, "speech_commands": {"test_root": args.test_root}}
    metas = LOADERS[args.name](args.root, args.out, **extra.get(args.name, {}))
    if args.json:
        print_json(metas)
    else:
        for task, meta in metas.items():
            print(f"{args.out}/{task}: {meta['splits']}", file=sys.stderr)
    return 0


# --- kmeans (kmeans/) ------------------------------------------------------------------------------


def add_kmeans(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="token store; the labels are written into it")
    p.add_argument(
        "--source",
        default="codec",
        help="'codec' (quantized latent), 'mfcc' / 'fbank' (the store's audio; baselines' round 1) or CKPT[:LAYER]",
    )
    p.add_argument("--audio", default="", help="manifest (id/path) of the store's audio; default: its sources")
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument(
        "--sample-frames", type=int, default=0, help="frames sampled for the fit (0: clusters x --frames-per-cluster)"
    )
    p.add_argument("--frames-per-cluster", type=int, default=1000, help="sample budget per cluster when not given")
    p.add_argument("--max-sample-mb", type=int, default=4096, help="memory cap of the sampled features")
    p.add_argument("--n-init", type=int, default=3, help="k-means++ initialisations; the lowest inertia is kept")
    p.add_argument("--name", default="km", help="label set name (targets.clusters.labels)")
    p.add_argument("--split-field", default=None, help="entry field naming the split; fit only on --fit-split")
    p.add_argument("--fit-split", default="train")
    p.add_argument("--backend", default="auto", choices=["auto", "faiss", "sklearn"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_kmeans(args: argparse.Namespace) -> int:
    from codec2vec.kmeans import KMeansOptions, run_kmeans

    opts = KMeansOptions(
        source=args.source,
        clusters=args.clusters,
        sample_frames=args.sample_frames,
        frames_per_cluster=args.frames_per_cluster,
        max_sample_mb=args.max_sample_mb,
        n_init=args.n_init,
        name=args.name,
        split_field=args.split_field,
        fit_split=args.fit_split,
        seed=args.seed,
        backend=args.backend,
        audio=args.audio,
    )
    summary = run_kmeans(args.store, opts, progress=not args.json)
    if args.json:
        print_json(summary)
    return 0


# --- export (features/export.py) ------------------------------------------------------------------------------


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a checkpoint directory or a run directory (its newest checkpoint)")
    p.add_argument("--out", required=True, help="new folder: model.safetensors, config.json, README.md")
    p.add_argument("--replace", action="store_true", help="replace an existing export folder")
    p.add_argument("--json", action="store_true", help="print the written config.json")


def run_export(args: argparse.Namespace) -> int:
    from codec2vec.features.export import export_model

    config = export_model(args.ckpt, args.out, replace=args.replace)
    if args.json:
        print_json(config)
    else:
        print(f"exported the step-{config['step']} encoder to {args.out}", file=sys.stderr)
    return 0
