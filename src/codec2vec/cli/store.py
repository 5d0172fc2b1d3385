"""Verbs of the token store: tokenize, info, verify, decode, merge."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from codec2vec.cli.common import emit, print_json
from codec2vec.cli.flags import add_options, add_verb, from_args
from codec2vec.common.errors import Codec2VecError

# --- tokenize / info / verify / decode / merge (store.py, tokenize.py) -------------------------


def add_tokenize(p: argparse.ArgumentParser) -> None:
    from codec2vec.tokenize import TokenizeOptions

    p.add_argument(
        "src",
        nargs="+",
        help="audio files, folders (recursive) or manifests (.txt/.tsv/.jsonl; Kaldi data dirs or wav.scp, fairseq "
        ".tsv, lhotse .jsonl[.gz])",
    )
    p.add_argument("--out", required=True, help="token store directory (created or appended to)")
    add_options(p, TokenizeOptions)
    p.add_argument("--max-hours", default="4.0", help="reject longer files (from their header)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_tokenize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from codec2vec.common.options import convert
    from codec2vec.tokenize import TokenizeOptions, tokenize

    opts = from_args(TokenizeOptions, args)
    opts = replace(
        opts,
        max_seconds=convert("--max-hours", args.max_hours, float) * 3600.0,
        private=opts.private or bool(opts.private_key or opts.id_map),  # naming a key means private
    )
    summary = tokenize(args.src, args.out, opts, progress=not args.json)
    emit(args.json, summary, format_summary, stderr=True)
    return 3 if summary["rejected"] else 0


def add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--json", action="store_true")


def cmd_info(args: argparse.Namespace) -> int:
    from codec2vec.store import TokenStore

    emit(args.json, TokenStore.open(args.store).info(), format_info)
    return 0


def add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--repair",
        action="store_true",
        help="first drop copies of an utterance with the same codes, move same-id copies with other codes, foreign "
        "and unreadable files to STORE/foreign/, record the contents (never deletes the only copy of anything), "
        "then verify",
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from codec2vec.store import TokenStore

    actions = TokenStore.open(args.store, check=False).repair() if args.repair else []
    for line in actions if not args.json else []:
        print(f"repaired: {line}", file=sys.stderr)
    try:
        problems = TokenStore.open(args.store, check=False).verify()
    except Codec2VecError as e:  # meta.json damaged, or a duplicate id across shards
        problems = [str(e)]
    if args.json:
        print_json({"ok": not problems, "problems": problems, "repairs": actions})
    elif problems:
        for line in problems:
            print(f"DAMAGED: {line}", file=sys.stderr)
    else:
        print(f"{args.store}: sound")
    return 1 if problems else 0


def add_decode(p: argparse.ArgumentParser) -> None:
    from codec2vec.store.decode import DecodeOptions

    out = dict(required=True, help="directory for one audio file per utterance")
    add_verb(p, DecodeOptions, {"store": {}, "--out": out}, json=None)


def cmd_decode(args: argparse.Namespace) -> int:
    from codec2vec.store.decode import DecodeOptions, decode_store

    o = from_args(DecodeOptions, args)
    n = decode_store(args.store, args.out, ids=o.ids, codec_path=o.codec_path, fmt=o.format)
    print(f"decoded {n} utterances into {args.out}", file=sys.stderr)
    return 0


def add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", help="stores made with the same codec (e.g. by --shard I/N)")
    p.add_argument("--out", required=True)


def cmd_merge(args: argparse.Namespace) -> int:
    from codec2vec.store.merge import merge_stores

    n = merge_stores(args.stores, args.out)
    print(f"merged {len(args.stores)} stores ({n} utterances) into {args.out}", file=sys.stderr)
    return 0


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable end-of-run storage summary."""
    info = s["store"]
    lines = [
        f"tokenized {s['stored']} utterances ({s['seconds_encoded']:.1f} s of audio) in {s['elapsed_seconds']:.1f} s "
        f"= {s['x_real_time']:.1f}x real time; {s['skipped_already_stored']} already stored; {s['rejected']} rejected",
        f"store {info['path']}: {info['utterances']} utterances, {info['hours']:.3f} h, {info['bytes']:,} bytes, "
        f"{info['kbps']:.2f} kbps; {info['ratio_to_source']:.1f}x smaller than the source files, "
        f"{info['ratio_to_pcm16']:.1f}x smaller than 16-bit PCM",
    ]
    differ = s.get("skipped_other_audio", [])
    if differ:
        lines.append(
            f"of those already stored, {len(differ)} were stored from a file of another size (other audio under the "
            f"same id? give the second corpus other ids): {', '.join(map(repr, differ[:5]))}"
            + (" ..." if len(differ) > 5 else "")
        )
    lines += [f"rejected: {r['reason']}" for r in s["rejects"][:20]]
    if len(s["rejects"]) > 20:
        lines.append(f"... and {len(s['rejects']) - 20} more in {info['path']}/rejects.jsonl")
    return "\n".join(lines)


# --- labels export / import (store/km.py) -------------------------------------------------------------


def add_labels(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="a label set -> HuBERT's SPLIT.km, SPLIT.ids, SPLIT.tsv and dict.km.txt")
    ex.add_argument("store")
    ex.add_argument("--name", required=True, help="label set in the store")
    ex.add_argument("--out", required=True, help="folder for the files")
    ex.add_argument("--split", default="all", help="file stem; other than 'all': only that manifest split")
    im = sub.add_parser("import", help="a HuBERT .km file -> a label set of the store")
    im.add_argument("store")
    im.add_argument("--km", required=True, help="one line of space-separated labels per utterance")
    order = im.add_mutually_exclusive_group(required=True)
    order.add_argument("--ids", default=None, help="utterance ids, one per line, in the .km file's order")
    order.add_argument("--tsv", default=None, help="fairseq manifest of the .km file's utterances (same order)")
    im.add_argument("--name", required=True, help="label set to write (replaced if present)")
    for q in (ex, im):
        q.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_labels(args: argparse.Namespace) -> int:
    from codec2vec.store import TokenStore
    from codec2vec.store.km import export_km, import_km

    store = TokenStore.open(args.store)
    if args.action == "export":
        summary = export_km(store, args.name, args.out, args.split)
        text = f"wrote {summary['utterances']} utterances, {summary['classes']} classes: {', '.join(summary['files'])}"
    else:
        summary = import_km(store, args.km, args.name, ids=args.ids, tsv=args.tsv)
        text = f"label set {args.name!r}: {summary['utterances']} utterances, {summary['classes']} classes"
    emit(args.json, summary, text, stderr=True)
    return 0


def format_info(info: dict[str, Any]) -> str:
    """Human-readable `codec2vec info`."""
    c = info["codec"]
    return "\n".join(
        [
            f"store      {info['path']}",
            f"codec      {c['name']} ({c['sample_rate']} Hz, {c['frame_rate']:g} frames/s, "
            f"K={c['num_codebooks']} x V={c['codebook_size']}, config {c['config_hash']})",
            f"contents   {info['utterances']} utterances, {info['frames']} frames, {info['hours']:.3f} h",
            f"on disk    {info['bytes']:,} bytes in {info['shards']} shards = {info['kbps']:.2f} kbps "
            f"(codes alone {info['codes_kbps']:.2f} kbps; nominal {info['nominal_kbps']:.2f})",
            f"vs source  {info['ratio_to_source']:.1f}x smaller than the source files, "
            f"{info['ratio_to_pcm16']:.1f}x smaller than 16-bit PCM",
            f"labels     {', '.join(info['labels']) or 'none'}",
            f"privacy    private: {'yes' if info.get('private') else 'no'}, scrambled: "
            f"{'yes' if info.get('scrambled') else 'no'}",
        ]
    )
