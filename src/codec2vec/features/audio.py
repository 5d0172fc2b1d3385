"""Probe features of the continuous-input baselines (`model.frontend: waveform | mel | melhubert`), from audio.

Their encoder reads 16 kHz audio `(B, S)`, not codes, so `features.cached_features` hands their sources here: the
task folder's clips are read from the files its manifests name, batched by length, and every layer is stored in
the same `FeatureDir` format as the codec path, one row per frame of the shared 50 Hz grid (T = ceil(S / 320),
`frontends.grid`), so frame labels, ABX alignments and pooled heads see the same frames as for a codec model.

`fill_from_audio(fdir, source, items)`: items (`audio.AudioItem`: id, path) -> features `(T, layers, D)` float16
written into `fdir`; returns how many utterances were extracted (those already there are skipped).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from codec2vec.audio import AudioItem, load_audio
from codec2vec.errors import AudioError
from codec2vec.frontends.grid import SAMPLE_RATE, num_frames
from codec2vec.progress import Progress

AUDIO_FRONTENDS = ("waveform", "mel", "melhubert")


def is_audio_source(source: Any) -> bool:
    """True for a feature source whose checkpoint has an audio front end (the baselines)."""
    meta = source.meta
    frontend = meta.get("frontend") or meta.get("config", {}).get("model", {}).get("frontend", "codec")
    return frontend in AUDIO_FRONTENDS


def _batches(ids: list[str], frames: dict[str, int], batch_frames: int) -> list[list[str]]:
    """Consecutive groups of length-sorted ids with (count x longest) <= batch_frames (at least one each)."""
    out: list[list[str]] = []
    group: list[str] = []
    for uid in ids:
        if group and (len(group) + 1) * max(frames[uid], 1) > batch_frames:
            out.append(group)
            group = []
        group.append(uid)
    return out + [group] if group else out


@torch.no_grad()
def fill_from_audio(
    fdir: Any,
    source: Any,
    items: Sequence[AudioItem],
    *,
    batch_frames: int = 3000,
    shard_frames: int = 200_000,
    progress: bool = False,
    rejects: list[dict[str, str]] | None = None,
) -> int:
    """Extract every item not yet in `fdir` with the audio upstream `source` (a `features.FeatureSource`). With
    `rejects`, an unreadable file is listed there (`path`, `id`, `reason`) and skipped instead of raising."""
    todo = [it for it in items if it.id not in fdir]
    if not todo:
        return 0
    source.prepare(torch.zeros(0, 0, 0))  # the audio front ends have no codec tables
    wavs = {}
    for it in todo:
        try:
            wavs[it.id] = load_audio(it.path, SAMPLE_RATE)
        except AudioError as e:
            if rejects is None:
                raise
            rejects.append({"path": it.path, "id": it.id, "reason": str(e)})
    frames = {u: int(num_frames(len(w))) for u, w in wavs.items()}
    order = sorted(wavs, key=lambda u: frames[u])
    pending: list[tuple[str, np.ndarray]] = []
    bar = Progress(f"features {source.name}", len(order), unit="utt", enabled=progress)
    for batch in _batches(order, frames, batch_frames):
        lengths = torch.tensor([frames[u] for u in batch])  # (B,) frames
        audio = torch.zeros(len(batch), int(lengths.max()) * 320)  # (B, S) zero past each clip
        for b, uid in enumerate(batch):
            audio[b, : len(wavs[uid])] = torch.from_numpy(wavs[uid])
        layers = source(audio, lengths)  # [n] x (B, T, D)
        h = torch.stack([layers[i] for i in fdir.layers], dim=2).half().numpy()  # (B, T, n, D)
        pending += [(uid, h[b, : frames[uid]]) for b, uid in enumerate(batch)]
        if sum(a.shape[0] for _, a in pending) >= shard_frames:
            fdir.add(pending)
            pending = []
        bar.update(len(batch))
    if pending:
        fdir.add(pending)
    bar.close()
    return len(wavs)


__all__ = ["AUDIO_FRONTENDS", "fill_from_audio", "is_audio_source"]
