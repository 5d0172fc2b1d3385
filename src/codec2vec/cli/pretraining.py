"""Verbs of corpora and pre-training: pretrain, synth, corpus, kmeans."""

from __future__ import annotations

import argparse

from codec2vec.cli.common import TARGET_NAMES, emit
from codec2vec.cli.flags import add_verb, from_args

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


def cmd_pretrain(args: argparse.Namespace) -> int:
    import os

    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.loop import pretrain

    summary = pretrain(load_config(args.config, args.overrides))
    emit(args.json and int(os.environ.get("RANK", "0")) == 0, summary)
    return 0


# --- synth / corpus (corpora/synth.py, corpora/datasets.py) ------------------------------------------------------


def add_synth(p: argparse.ArgumentParser) -> None:
    from codec2vec.corpora.synth import SynthOptions

    add_verb(p, SynthOptions, {"out": dict(help="output folder: audio/, all.jsonl and one manifest folder per task")})


def cmd_synth(args: argparse.Namespace) -> int:
    from codec2vec.corpora.synth import SynthOptions, synth_corpus

    summary = synth_corpus(args.out, from_args(SynthOptions, args), progress=not args.json)
    tasks = ", ".join(f"{t} {sum(n.values())}" for t, n in summary["tasks"].items())
    emit(args.json, summary, f"{args.out}: {summary['clips']} clips, {summary['hours']:.3f} h ({tasks})", stderr=True)
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


def cmd_corpus(args: argparse.Namespace) -> int:
    from codec2vec.corpora import LOADERS

    extra = {"iemocap": {"fold": args.fold}, "speech_commands": {"test_root": args.test_root}}
    metas = LOADERS[args.name](args.root, args.out, **extra.get(args.name, {}))
    emit(
        args.json, metas, "\n".join(f"{args.out}/{task}: {meta['splits']}" for task, meta in metas.items()), stderr=True
    )
    return 0


# --- kmeans (kmeans/) ------------------------------------------------------------------------------


def add_kmeans(p: argparse.ArgumentParser) -> None:
    from codec2vec.kmeans import KMeansOptions

    add_verb(p, KMeansOptions, {"store": dict(help="token store; the labels are written into it")})


def cmd_kmeans(args: argparse.Namespace) -> int:
    from codec2vec.kmeans import KMeansOptions, run_kmeans

    emit(args.json, run_kmeans(args.store, from_args(KMeansOptions, args), progress=not args.json))
    return 0


# --- export (features/export.py) ------------------------------------------------------------------------------


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a checkpoint directory or a run directory (its newest checkpoint)")
    p.add_argument("--out", required=True, help="new folder: model.safetensors, config.json, README.md")
    p.add_argument("--replace", action="store_true", help="replace an existing export folder")
    p.add_argument("--json", action="store_true", help="print the written config.json")


def cmd_export(args: argparse.Namespace) -> int:
    from codec2vec.features.export import export_model

    config = export_model(args.ckpt, args.out, replace=args.replace)
    emit(args.json, config, f"exported the step-{config['step']} encoder to {args.out}", stderr=True)
    return 0
