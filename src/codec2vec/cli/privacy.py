"""Verbs of privacy: anonymize, privacy-audit."""

from __future__ import annotations

import argparse
import sys

from codec2vec.cli.common import print_json

# --- anonymize / privacy-audit (privacy/) ----------------------------------------------------------


def add_anonymize(p: argparse.ArgumentParser) -> None:
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


def cmd_anonymize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.files import check_outside
    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.privacy.keys import PrivacyError, load_key
    from codec2vec.privacy.private import default_paths, read_id_map

    private = args.private or args.private_key or args.id_map
    default_key, default_map = default_paths(args.out)
    id_key_file = (args.private_key or default_key) if private else None
    id_map = (args.id_map or default_map) if private else None
    check_outside(  # the source store is never written: no output, key or id map inside it
        {
            "--out": args.out,
            "--scramble-key": None if args.unscramble else args.scramble_key,
            "--private-key": id_key_file,
            "--id-map": id_map,
        },
        [args.store],
    )
    if args.scramble_key and Path(args.scramble_key).resolve().is_relative_to(Path(args.out).resolve()):
        raise PrivacyError(f"--scramble-key {args.scramble_key}: keep the key outside the store")
    if id_map is not None:
        read_id_map(id_map)  # not our id map: refused before a key is made
    key = load_key(args.scramble_key, create=not args.unscramble) if args.scramble_key else None
    keep = tuple(c for c in args.keep.split(",") if c)
    id_key = load_key(id_key_file, create=True) if id_key_file else None
    summary = anonymize_store(
        args.store, args.out, levels=args.levels, key=key, unscramble_codes=args.unscramble, keep=keep,
        id_key=id_key, id_map=id_map,
    )  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        what = "unscrambled" if summary["unscrambled"] else "scrambled" if summary["scrambled"] else "clear"
        print(f"{args.out}: {summary['utterances']} utterances, {summary['levels']} of {summary['of']} levels, "
              f"{what}", file=sys.stderr)  # fmt: skip
    return 0


def add_privacy_audit(p: argparse.ArgumentParser) -> None:
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


def cmd_privacy_audit(args: argparse.Namespace) -> int:
    from codec2vec.privacy.audit import format_audit, run_audit

    report = run_audit(
        args.store, labels=args.labels, source_dir=args.source_dir, id_map=args.id_map, key_file=args.scramble_key,
        reference=args.reference, clear=args.clear, codec_path=args.codec_path, per_speaker=args.per_speaker,
        decode_files=args.decode_files,
    )  # fmt: skip
    if args.json:
        print_json(report)
    else:
        print(format_audit(report))
    return 0
