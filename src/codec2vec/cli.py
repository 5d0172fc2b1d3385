"""`codec2vec <verb>`: the command line. Each verb is a thin wrapper over one importable function.

Exit statuses follow DESIGN.md: 0 success; 3 from `tokenize` when some inputs were rejected; 2 for
usage errors and clear, expected failures (bad file, damaged store); `--json` prints one JSON object.
Each verb owns one `_add_<verb>` (arguments) and one `_run_<verb>` (call) pair below.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import Callable, Sequence

from codec2vec.errors import Codec2VecError


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")


# --- tokenize / info / verify / decode / merge (store.py, tokenize.py) -------------------------


def _add_tokenize(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="+", help="audio files, folders (recursive) or manifests (.txt/.tsv/.jsonl)")
    p.add_argument("--out", required=True, help="token store directory (created or appended to)")
    p.add_argument("--codec", default="lyra", help="codec backend: lyra, dac, encodec, mimi")
    p.add_argument("--codec-path", default=None, help="weights: a local folder or a hub id")
    p.add_argument("--num-codebooks", type=int, default=None, help="levels to keep (Lyra: 1..46; EnCodec/Mimi: K)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--batch-size", type=int, default=8, help="utterances per encode call")
    p.add_argument("--shard", default=None, help="I/N: tokenize only the I-th of N slices (0-based)")
    p.add_argument("--shard-seconds", type=float, default=600.0, help="audio seconds per committed shard")
    p.add_argument("--retry-rejects", action="store_true", help="try inputs rejected by an earlier run again")
    p.add_argument("--max-hours", type=float, default=4.0, help="reject longer files (from their header)")
    p.add_argument(
        "--coding",
        default="auto",
        choices=["auto", "packed"],
        help="a new store's shards: entropy-coded when smaller (auto) or exact-width bit packing",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--private", action="store_true", help="keyed ids; no paths, names or free text in the store")
    p.add_argument("--private-key", default=None, help="--private: key file (created 0600; default OUT.key)")
    p.add_argument("--id-map", default=None, help="--private: hashed id -> source map (default OUT.ids.jsonl)")
    p.add_argument(
        "--private-keep",
        default="split",
        help="--private: manifest columns to keep, comma-separated (free text and names only if listed)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_tokenize(args: argparse.Namespace) -> int:
    from codec2vec.tokenize import TokenizeOptions, tokenize

    summary = tokenize(
        args.src,
        args.out,
        TokenizeOptions(
            codec=args.codec,
            codec_path=args.codec_path,
            num_codebooks=args.num_codebooks,
            workers=args.workers,
            batch_size=args.batch_size,
            shard=args.shard,
            shard_seconds=args.shard_seconds,
            retry_rejects=args.retry_rejects,
            device=args.device,
            coding=args.coding,
            max_seconds=args.max_hours * 3600.0,
            private=args.private or bool(args.private_key or args.id_map),  # naming a key means private
            private_key=args.private_key,
            id_map=args.id_map,
            private_keep=tuple(c for c in args.private_keep.split(",") if c),
        ),
        progress=not args.json,
    )
    if args.json:
        _print_json(summary)
    else:
        from codec2vec.tokenize import format_summary

        print(format_summary(summary), file=sys.stderr)
    return 3 if summary["rejected"] else 0


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--json", action="store_true")


def _run_info(args: argparse.Namespace) -> int:
    from codec2vec.store import TokenStore, format_info

    info = TokenStore.open(args.store).info()
    if args.json:
        _print_json(info)
    else:
        print(format_info(info))
    return 0


def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--repair",
        action="store_true",
        help="first keep one copy of each utterance, move foreign files out, record the contents (never "
        "deletes the only copy of anything), then verify",
    )


def _run_verify(args: argparse.Namespace) -> int:
    from codec2vec.store import TokenStore

    actions = TokenStore.open(args.store, check=False).repair() if args.repair else []
    for line in actions if not args.json else []:
        print(f"repaired: {line}", file=sys.stderr)
    try:
        problems = TokenStore.open(args.store, check=False).verify()
    except Codec2VecError as e:  # meta.json damaged, or a duplicate id across shards
        problems = [str(e)]
    if args.json:
        _print_json({"ok": not problems, "problems": problems, "repairs": actions})
    elif problems:
        for line in problems:
            print(f"DAMAGED: {line}", file=sys.stderr)
    else:
        print(f"{args.store}: sound")
    return 1 if problems else 0


def _add_decode(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--out", required=True, help="directory for one audio file per utterance")
    p.add_argument("--ids", nargs="*", default=None, help="utterance ids (default: all)")
    p.add_argument("--codec-path", default=None)
    p.add_argument("--format", default="wav", choices=["wav", "flac"])


def _run_decode(args: argparse.Namespace) -> int:
    from codec2vec.tokenize import decode_store

    n = decode_store(args.store, args.out, ids=args.ids, codec_path=args.codec_path, fmt=args.format)
    print(f"decoded {n} utterances into {args.out}", file=sys.stderr)
    return 0


def _add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", help="stores made with the same codec (e.g. by --shard I/N)")
    p.add_argument("--out", required=True)


def _run_merge(args: argparse.Namespace) -> int:
    from codec2vec.store.merge import merge_stores

    n = merge_stores(args.stores, args.out)
    print(f"merged {len(args.stores)} stores ({n} utterances) into {args.out}", file=sys.stderr)
    return 0


# --- pretrain (config.py, train.py) ----------------------------------------------------------------


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (a serialized PretrainConfig), e.g. configs/lyra_tiny.yaml")
    p.add_argument("overrides", nargs="*", help="key=value: data.store=, run.dir=, train.steps=, targets=a,b ...")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")


def _run_pretrain(args: argparse.Namespace) -> int:
    import os

    from codec2vec.config import load_config
    from codec2vec.train import pretrain

    summary = pretrain(load_config(args.config, args.overrides))
    if args.json and int(os.environ.get("RANK", "0")) == 0:
        _print_json(summary)
    return 0


# --- synth / corpus (synth.py, corpora.py) ------------------------------------------------------


def _add_synth(p: argparse.ArgumentParser) -> None:
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


def _run_synth(args: argparse.Namespace) -> int:
    from codec2vec.corpora.synth import SynthOptions, synth_corpus

    options = SynthOptions(
        hours=args.hours, speakers=args.speakers, seed=args.seed, snr=args.snr, reverb=args.reverb,
        split_by=args.split_by, workers=args.workers,
    )  # fmt: skip
    summary = synth_corpus(args.out, options, progress=not args.json)
    if args.json:
        _print_json(summary)
    else:
        tasks = ", ".join(f"{t} {sum(n.values())}" for t, n in summary["tasks"].items())
        print(f"{args.out}: {summary['clips']} clips, {summary['hours']:.3f} h ({tasks})", file=sys.stderr)
    return 0


def _add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["librispeech", "speech_commands", "voxceleb1", "fluent_speech_commands", "iemocap"])
    p.add_argument("root", help="the dataset's local folder, in its standard layout")
    p.add_argument("--out", required=True, help="folder for the task manifests")
    p.add_argument("--fold", type=int, default=1, help="iemocap: the test session (1..5)")
    p.add_argument("--test-root", default=None, help="speech_commands: the official test set folder")
    p.add_argument("--json", action="store_true")


def _run_corpus(args: argparse.Namespace) -> int:
    from codec2vec.corpora import LOADERS

    extra = {"iemocap": {"fold": args.fold}, "speech_commands": {"test_root": args.test_root}}
    metas = LOADERS[args.name](args.root, args.out, **extra.get(args.name, {}))
    if args.json:
        _print_json(metas)
    else:
        for task, meta in metas.items():
            print(f"{args.out}/{task}: {meta['splits']}", file=sys.stderr)
    return 0


# --- kmeans (kmeans.py) ----------------------------------------------------------------------------


def _add_kmeans(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="token store; the labels are written into it")
    p.add_argument(
        "--source",
        default="codec",
        help="'codec' (quantized latent), 'mfcc' (the store's audio; baselines' round 1) or CKPT[:LAYER]",
    )
    p.add_argument("--audio", default="", help="manifest (id/path) of the store's audio; default: its sources")
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument(
        "--sample-frames", type=int, default=0, help="frames sampled for the fit (0: clusters x --frames-per-cluster)"
    )
    p.add_argument("--frames-per-cluster", type=int, default=1000, help="sample budget per cluster when not given")
    p.add_argument("--max-sample-mb", type=int, default=4096, help="memory cap of the sampled features")
    p.add_argument("--n-init", type=int, default=3, help="k-means++ initialisations; the lowest inertia is kept")
    p.add_argument("--name", default="km", help="label set name (targets.clusters_labels)")
    p.add_argument("--split-field", default=None, help="entry field naming the split; fit only on --fit-split")
    p.add_argument("--fit-split", default="train")
    p.add_argument("--backend", default="auto", choices=["auto", "faiss", "sklearn"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_kmeans(args: argparse.Namespace) -> int:
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
        _print_json(summary)
    return 0


# --- anonymize / privacy-audit (privacy/) ----------------------------------------------------------


def _add_anonymize(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the token store to anonymise (never written to)")
    p.add_argument("--out", required=True, help="the new, anonymised store")
    p.add_argument("--levels", type=int, default=None, help="keep only the first N codebook levels")
    p.add_argument("--scramble-key", default=None, help="key file (created 0600 if absent): secret code permutation")
    p.add_argument("--unscramble", action="store_true", help="restore a scrambled store's codes with its key")
    p.add_argument("--keep", default="split", help="manifest columns to keep (comma-separated; paths never kept)")
    p.add_argument("--private", action="store_true", help="ids become keyed hashes, as tokenize --private")
    p.add_argument("--private-key", default=None, help="--private: key file (created 0600; default OUT.key)")
    p.add_argument("--id-map", default=None, help="--private: hashed id -> old id map (default OUT.ids.jsonl)")
    p.add_argument("--json", action="store_true")


def _run_anonymize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.privacy.keys import PrivacyError, load_key

    key = None
    if args.scramble_key:
        if Path(args.scramble_key).resolve().is_relative_to(Path(args.out).resolve()):
            raise PrivacyError(f"--scramble-key {args.scramble_key}: keep the key outside the store")
        key = load_key(args.scramble_key, create=not args.unscramble)
    keep = tuple(c for c in args.keep.split(",") if c)
    id_key, id_map = None, None
    if args.private or args.private_key or args.id_map:
        from codec2vec.privacy.private import default_paths

        default_key, default_map = default_paths(args.out)
        id_key, id_map = load_key(args.private_key or default_key, create=True), args.id_map or default_map
    summary = anonymize_store(
        args.store, args.out, levels=args.levels, key=key, unscramble_codes=args.unscramble, keep=keep,
        id_key=id_key, id_map=id_map,
    )  # fmt: skip
    if args.json:
        _print_json(summary)
    else:
        what = "unscrambled" if summary["unscrambled"] else "scrambled" if summary["scrambled"] else "clear"
        print(f"{args.out}: {summary['utterances']} utterances, {summary['levels']} of {summary['of']} levels, "
              f"{what}", file=sys.stderr)  # fmt: skip
    return 0


def _add_privacy_audit(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the token store to audit (never written to)")
    p.add_argument("--labels", default=None, help="manifest with id and speaker columns (for the SID probe)")
    p.add_argument("--source-dir", default=None, help="the source audio: a folder or manifest (decoded audio check)")
    p.add_argument("--id-map", default=None, help="a private store's id map (matches labels and sources)")
    p.add_argument("--scramble-key", default=None, help="a scrambled store's key: also decode with the key")
    p.add_argument("--reference", default=None, help="the attacker's own clear tokens (same codec): frequency attack")
    p.add_argument(
        "--clear", default=None, help="the same utterances in clear codes: SID probe trained on clear tokens"
    )
    p.add_argument("--codec-path", default=None)
    p.add_argument("--per-speaker", type=int, default=8, help="labelled utterances per speaker the attacker has")
    p.add_argument("--decode-files", type=int, default=40, help="utterances to decode (0: skip the decoder check)")
    p.add_argument("--json", action="store_true")


def _run_privacy_audit(args: argparse.Namespace) -> int:
    from codec2vec.privacy.audit import format_audit, run_audit

    report = run_audit(
        args.store, labels=args.labels, source_dir=args.source_dir, id_map=args.id_map, key_file=args.scramble_key,
        reference=args.reference, clear=args.clear, codec_path=args.codec_path, per_speaker=args.per_speaker,
        decode_files=args.decode_files,
    )  # fmt: skip
    if args.json:
        _print_json(report)
    else:
        print(format_audit(report))
    return 0


# --- bench (bench/) ------------------------------------------------------------------------------------


def _add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="*", help="audio files, folders or manifests (default: a synthetic corpus)")
    p.add_argument("--out", default="", help="keep stores, FLAC files, bench.json and bench.png here")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models, one step, no DAC")
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


def _run_bench(args: argparse.Namespace) -> int:
    from codec2vec.bench import BenchOptions, format_report, run_bench

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
        _print_json(result)
    else:
        print(format_report(result))
    return 0


# --- extract / probe (extract.py, probe/) ------------------------------------------------------------


def _add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="checkpoint directory or run directory (its newest checkpoint)")
    p.add_argument("src", nargs="+", help="a token store, or audio files, folders (recursive) or manifests")
    p.add_argument("--out", required=True, help="feature folder (created or appended to; reruns skip done items)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="hidden states to keep (0 = input; default all)")
    p.add_argument("--codec-path", default=None, help="the codec's weights (a local folder or a hub id)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.extract import extract_to_dir

    summary = extract_to_dir(
        args.ckpt, args.src, Path(args.out), layers=args.layers, codec_path=args.codec_path, progress=not args.json
    )
    if args.json:
        _print_json(summary)
    else:
        print(
            f"{args.out}: {summary['utterances']} utterances, {summary['frames']} frames, layers {summary['layers']}, "
            f"dim {summary['dim']} ({summary['extracted']} new, {summary['skipped_already_done']} already there)",
            file=sys.stderr,
        )
    return 0


def _add_probe(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="pr, asr, ks, sid, er, style, ic (SUPERB-style heads) or abx (label free)")
    p.add_argument("--ckpt", required=True, help="checkpoint directory or run directory")
    p.add_argument("--data", required=True, help="task folder (train/dev/test.jsonl, meta.json)")
    p.add_argument("--store", default=None, help="token store holding the task's utterance ids (default: tokenize)")
    p.add_argument("--references", default="codec,random", help="comma-separated among codec, random; '' for none")
    p.add_argument("--other", nargs="*", default=[], help="other checkpoints probed the same way")
    p.add_argument("--per-layer", action="store_true", help="also fit the head on each layer alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=100, help="upper bound; training stops early on dev")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $CODEC2VEC_CACHE or ~/.cache/codec2vec)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _run_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.probe.command import format_result, probe_command

    cache = Path(args.cache_dir) if args.cache_dir else None
    refs = [r for r in args.references.split(",") if r.strip()]
    result = probe_command(
        args.task, ckpt=args.ckpt, data=args.data, references=refs, others=args.other, per_layer=args.per_layer,
        seed=args.seed, max_epochs=args.max_epochs, cache_dir=cache, store=args.store, progress=not args.json,
    )  # fmt: skip
    if args.json:
        _print_json(result)
    else:
        print(format_result(result))
    return 0


# --- demo (demo.py, report.py) ---------------------------------------------------------------------------


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the corpus, store, run, results.json and report.html")
    p.add_argument("--small", action="store_true", help="the tests' setting: a few minutes instead of ~20")
    p.add_argument("--config", default="", help="pre-training config (default: configs/demo.yaml)")
    p.add_argument("--json", action="store_true", help="print results.json's probes as JSON")


def _run_demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from codec2vec.demo import DemoSettings, run_demo, settings_from_env

    base = DemoSettings.small() if args.small else DemoSettings()
    settings = settings_from_env(replace(base, config=args.config) if args.config else base)
    results = run_demo(args.out, settings, progress=not args.json)
    if args.json:
        _print_json({"report": os.path.join(args.out, "report.html"), "probes": results["probes"]})
    return 0


VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "tokenize": ("audio -> token store", _add_tokenize, _run_tokenize),
    "info": ("summary of a token store", _add_info, _run_info),
    "verify": ("check every shard and the index", _add_verify, _run_verify),
    "decode": ("token store -> audio files", _add_decode, _run_decode),
    "merge": ("join token stores", _add_merge, _run_merge),
    "synth": ("a synthetic labelled speech corpus (eSpeak NG)", _add_synth, _run_synth),
    "corpus": ("real dataset in its standard layout -> task manifests", _add_corpus, _run_corpus),
    "pretrain": ("masked-prediction pre-training on a token store", _add_pretrain, _run_pretrain),
    "kmeans": ("k-means labels for the clusters target", _add_kmeans, _run_kmeans),
    "anonymize": ("a new store with fewer levels and/or secretly permuted codes", _add_anonymize, _run_anonymize),
    "privacy-audit": (
        "what a store gives away: SID, decodable audio, metadata",
        _add_privacy_audit,
        _run_privacy_audit,
    ),
    "bench": ("the efficiency benchmark: storage, reads, tokenization, training speed", _add_bench, _run_bench),
    "extract": ("layer features of a checkpoint for a store or audio", _add_extract, _run_extract),
    "probe": ("SUPERB-style probe (or ABX) of a checkpoint against reference points", _add_probe, _run_probe),
    "demo": ("the whole pipeline on a synthetic corpus, with a report", _add_demo, _run_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codec2vec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, (help_, add, _) in VERBS.items():
        add(sub.add_parser(verb, help=help_, description=help_))
    return parser


_USER_ERRNOS = frozenset(
    getattr(errno, n)
    for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EEXIST", "EISDIR", "ENOTDIR", "ENAMETOOLONG")
    if hasattr(errno, n)
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, _, run = VERBS[args.verb]
    try:
        return run(args)
    except (Codec2VecError, FileNotFoundError) as e:
        # Expected failures: one clear line, no traceback.
        print(f"codec2vec {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _USER_ERRNOS:
            raise
        # The machine's answer (disk full, read-only, no permission, a file where a folder is wanted), named.
        where = f"{e.filename}: " if e.filename else ""
        print(f"codec2vec {args.verb}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codec2vec {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen case: one line, the traceback on request
        if os.environ.get("CODEC2VEC_DEBUG"):
            raise
        print(
            f"codec2vec {args.verb}: unexpected {type(e).__name__}: {e} (set CODEC2VEC_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
