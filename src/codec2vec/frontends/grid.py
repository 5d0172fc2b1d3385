"""The frame grid every front end shares: the codec grid of 16 kHz codecs (hop 320 samples, 50 frames/s).

T = ceil(samples / 320) frames, so masks, k-means labels and probe labels never need resampling.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

SAMPLE_RATE = 16000
HOP = 320  # samples per frame of the shared grid (50 frames/s at 16 kHz)


def num_frames(samples: int | Tensor) -> Any:
    """Frames on the shared grid for `samples` samples: ceil(samples / 320)."""
    return -(-samples // HOP)
