"""`codec2vec <verb>`: the command line. Each verb is a thin wrapper over one importable function.

Exit statuses (the README's contract): 0 success; 3 from `tokenize` and `extract` when some inputs were rejected; 2 for
usage errors and clear, expected failures (bad file, damaged store); `--json` prints one JSON object.
Each verb owns one `add_<verb>` (arguments) and one `cmd_<verb>` (call) pair, grouped by stage: `store.py`,
`pretraining.py`, `evaluation.py`, `privacy.py`. A verb with an options dataclass gets its flags from it
(`flags.py`), so the dataclass is imported when that verb's arguments are made: `main` makes only the named verb's.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Callable, Sequence

from codec2vec.cli import evaluation, pretraining, privacy, store
from codec2vec.common.errors import Codec2VecError

VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "tokenize": ("audio -> token store", store.add_tokenize, store.cmd_tokenize),
    "info": ("summary of a token store", store.add_info, store.cmd_info),
    "verify": ("check every shard and the index", store.add_verify, store.cmd_verify),
    "decode": ("token store -> audio files", store.add_decode, store.cmd_decode),
    "merge": ("join token stores", store.add_merge, store.cmd_merge),
    "labels": ("label sets <-> HuBERT's .km and dict.km.txt files", store.add_labels, store.cmd_labels),
    "synth": ("a synthetic labelled speech corpus (eSpeak NG)", pretraining.add_synth, pretraining.cmd_synth),
    "corpus": ("real dataset in its standard layout -> task manifests", pretraining.add_corpus, pretraining.cmd_corpus),
    "pretrain": ("masked-prediction pre-training on a token store", pretraining.add_pretrain, pretraining.cmd_pretrain),
    "kmeans": ("k-means labels for the clusters target", pretraining.add_kmeans, pretraining.cmd_kmeans),
    "anonymize": ("a store with fewer levels and/or permuted codes", privacy.add_anonymize, privacy.cmd_anonymize),
    "privacy-audit": ("what a store gives away", privacy.add_privacy_audit, privacy.cmd_privacy_audit),
    "bench": ("storage, speed, equal-compute quality, the frontier", evaluation.add_bench, evaluation.cmd_bench),
    "export": ("a checkpoint -> an encoder-only folder for the hub", pretraining.add_export, pretraining.cmd_export),
    "extract": ("layer features of a checkpoint for a store or audio", evaluation.add_extract, evaluation.cmd_extract),
    "probe": ("SUPERB-style probe or ABX of a checkpoint", evaluation.add_probe, evaluation.cmd_probe),
    "demo": ("the whole pipeline on a synthetic corpus, with a report", evaluation.add_demo, evaluation.cmd_demo),
}


def _says_something(default: object) -> bool:
    return not (default is None or default is False or default is argparse.SUPPRESS or default in ("", []))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, quiet where the default says nothing (None, False, '', [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        switch = action.nargs == 0  # --x / --no-x: the flag itself says what it sets
        if "%(default)" in help_ or not action.option_strings or switch or not _says_something(action.default):
            return help_
        return f"{help_} (default: %(default)s)".strip()


def _version() -> str:
    """The installed distribution's version (package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codec2vec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the other verbs are listed without their arguments (what `main`
    parses: a verb's options dataclass and the heavy modules it lives with are imported for that verb alone)."""
    parser = argparse.ArgumentParser(prog="codec2vec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"codec2vec {_version()}")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, (help_, add, _) in VERBS.items():
        p = sub.add_parser(verb, help=help_, description=help_, formatter_class=_HelpFormatter)
        if only is not None and verb != only:
            continue
        add(p)
        for action in p._actions:  # an option without help text still shows its default
            if action.help is None and action.option_strings and action.nargs != 0 and _says_something(action.default):
                action.help = "(default: %(default)s)"
    return parser


_USER_ERRNOS = frozenset(
    getattr(errno, n)
    for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EEXIST", "EISDIR", "ENOTDIR", "ENAMETOOLONG")
    if hasattr(errno, n)
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(verb or "").parse_args(argv)  # no verb (--version, --help): no verb's arguments
    except SystemExit as e:  # usage errors (2: the message names the choices), --help and --version (0)
        return e.code if isinstance(e.code, int) else 2
    _, _, run = VERBS[args.verb]
    try:
        return run(args)
    except BrokenPipeError:  # `codec2vec info STORE | head`: the reader left; no traceback, the shell's SIGPIPE status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except (Codec2VecError, FileNotFoundError) as e:
        # Expected failures: one clear line, no traceback.
        print(f"codec2vec {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno is not None and e.errno not in _USER_ERRNOS:  # no errno: a short write (numpy on a full disk)
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
