"""The frame grid every front end shares: the codec grid of 16 kHz codecs (hop 320 samples, 50 frames/s).

T = ceil(samples / 320) frames, so masks, k-means labels and probe labels never need resampling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

SAMPLE_RATE = 16000
HOP = 320  # samples per frame of the shared grid (50 frames/s at 16 kHz)


def num_frames(samples: int | Tensor) -> Any:
    """Frames on the shared grid for `samples` samples: ceil(samples / 320)."""
    return -(-samples // HOP)


def masked_audio(wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, int]:
    """Audio `(B, S)` and frame lengths `(B,)` (None: every row full) -> (the audio zeroed past each row's frames
    `(B, S)`, the lengths `(B,)`, T = frames of S): what a spectral front end reads, so padding never leaks in."""
    b, t = wav.shape[0], int(num_frames(wav.shape[-1]))
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=wav.device)
    samples = torch.arange(wav.shape[1], device=wav.device)[None, :] < (lengths * HOP)[:, None]  # (B, S)
    return wav * samples, lengths, t


def half_frame_mask(lengths: Tensor, frames: int, dtype: torch.dtype) -> Tensor:
    """`(B, 2 T, 1)`: 1 on the 10 ms half-frames inside each row's `lengths` (two per grid frame), else 0."""
    return (torch.arange(2 * frames, device=lengths.device)[None, :] < 2 * lengths[:, None]).to(dtype)[..., None]
