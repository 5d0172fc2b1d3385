"""Verbs of privacy: anonymize, privacy-audit."""

from __future__ import annotations

import argparse

from codec2vec.cli.common import emit
from codec2vec.cli.flags import add_verb, from_args

# --- anonymize / privacy-audit (privacy/) ----------------------------------------------------------


def add_anonymize(p: argparse.ArgumentParser) -> None:
    from codec2vec.privacy.anonymize import AnonymizeOptions

    store = dict(help="the token store to anonymise (never written to)")
    add_verb(p, AnonymizeOptions, {"store": store, "--out": dict(required=True, help="the new, anonymised store")})


def cmd_anonymize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from codec2vec.common.files import check_outside
    from codec2vec.privacy.anonymize import AnonymizeOptions, anonymize_store
    from codec2vec.privacy.keys import PrivacyError, load_key
    from codec2vec.privacy.private import default_paths, read_id_map

    o = from_args(AnonymizeOptions, args)
    private = o.private or o.private_key or o.id_map
    default_key, default_map = default_paths(args.out)
    id_key_file = (o.private_key or default_key) if private else None
    id_map = (o.id_map or default_map) if private else None
    check_outside(  # the source store is never written: no output, key or id map inside it
        {
            "--out": args.out,
            "--scramble-key": None if o.unscramble else o.scramble_key,
            "--private-key": id_key_file,
            "--id-map": id_map,
        },
        [args.store],
    )
    if o.scramble_key and Path(o.scramble_key).resolve().is_relative_to(Path(args.out).resolve()):
        raise PrivacyError(f"--scramble-key {o.scramble_key}: keep the key outside the store")
    if id_map is not None:
        read_id_map(id_map)  # not our id map: refused before a key is made
    key = load_key(o.scramble_key, create=not o.unscramble) if o.scramble_key else None
    id_key = load_key(id_key_file, create=True) if id_key_file else None
    summary = anonymize_store(
        args.store, args.out, levels=o.levels, key=key, unscramble_codes=o.unscramble, keep=o.keep,
        id_key=id_key, id_map=id_map,
    )  # fmt: skip
    what = "unscrambled" if summary["unscrambled"] else "scrambled" if summary["scrambled"] else "clear"
    text = f"{args.out}: {summary['utterances']} utterances, {summary['levels']} of {summary['of']} levels, {what}"
    emit(args.json, summary, text, stderr=True)
    return 0


def add_privacy_audit(p: argparse.ArgumentParser) -> None:
    from codec2vec.privacy.audit import AuditOptions

    add_verb(p, AuditOptions, {"store": dict(help="the token store to audit (never written to)")}, json="the report")


def cmd_privacy_audit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from codec2vec.privacy.audit import AuditOptions, format_audit, run_audit

    kw = asdict(from_args(AuditOptions, args))
    report = run_audit(args.store, key_file=kw.pop("scramble_key"), **kw)
    emit(args.json, report, format_audit)
    return 0
