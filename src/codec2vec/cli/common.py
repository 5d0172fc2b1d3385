"""What every verb shares: printing one JSON object on stdout (`--json`), and the fixed choices the help lists.

The choices are spelled out here so that `--help` imports no backend; `tests/cli/test_cli_help.py` keeps each
equal to the dict it names (`codecs.CODECS`, `probe.tasks.TASKS`, `targets.TARGETS`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def print_json(obj: object) -> None:
    """One JSON object on one line of stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")


def emit(as_json: bool, result: Any, text: str | Callable[[Any], str] | None = None, *, stderr: bool = False) -> None:
    """A verb's answer: `result` as one JSON line (`--json`), else `text` (a string or made from `result`; None: nothing)
    on stdout, or on stderr where the verb's text is a summary beside files it wrote."""
    if as_json:
        print_json(result)
    elif text is not None:
        print(text(result) if callable(text) else text, file=sys.stderr if stderr else sys.stdout)


CODEC_NAMES: tuple[str, ...] = ("lyra", "dac", "encodec", "mimi")  # codecs.CODECS
PROBE_TASKS: tuple[str, ...] = ("pr", "asr", "ks", "sid", "er", "style", "ic", "abx")  # probe.tasks.TASKS + abx
TARGET_NAMES: tuple[str, ...] = ("reconstruction", "clusters", "online")  # targets.TARGETS
