"""ABX phone discriminability (ZeroSpeech 2021 / Libri-light; REFERENCE.md) from exact synthetic alignments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codec2vec.probe.features import FeatureSource


def abx(
    data: str | Path,
    *,
    source: FeatureSource,
    layer: int | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """-> {"task": "abx", "metric": "abx_error", "within", "across", "ci": {"within", "across"}, "layer",
    "per_layer"?: [{"layer", "within", "across"}]}; layer None: every layer scored, the best on dev reported."""
    raise NotImplementedError
