"""What every verb shares: printing one JSON object on stdout (`--json`), and the fixed choices the help lists.

The choices are spelled out here so that `--help` imports no backend; `tests/cli/test_cli_help.py` keeps each
equal to the dict it names (`codecs.CODECS`, `probe.tasks.TASKS`, `targets.TARGETS`)."""

from __future__ import annotations

import json
import sys


def print_json(obj: object) -> None:
    """One JSON object on one line of stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")


CODEC_NAMES: tuple[str, ...] = ("lyra", "dac", "encodec", "mimi")  # codecs.CODECS
PROBE_TASKS: tuple[str, ...] = ("pr", "asr", "ks", "sid", "er", "style", "ic", "abx")  # probe.tasks.TASKS + abx
TARGET_NAMES: tuple[str, ...] = ("reconstruction", "clusters", "online")  # targets.TARGETS
