"""What every verb shares: printing one JSON object on stdout (`--json`)."""

from __future__ import annotations

import json
import sys


def print_json(obj: object) -> None:
    """One JSON object on one line of stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")
