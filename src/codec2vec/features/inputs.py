"""What a feature source reads: padded batches of codes or 16 kHz audio for given utterance ids.

Every reader gives `num_frames(uid)` on the codec frame grid and `batch(ids) -> (inputs, lengths (B,))`:
  - `StoreCodes(store)`: the codes of a token store, `(B, K, T)` long, zero past each length;
  - `StoreAudio(store, manifest)`: the audio a store was made from (its recorded source files, or a manifest's),
    `(B, 320 T)` on the store's 16 kHz / 50 Hz grid, T its frame count (k-means of the audio baselines);
  - `ClipAudio(items)`: audio files (a task folder's clips, `codec2vec extract` inputs), read once, T =
    ceil(S / 320) (`frontends.grid`), so frame labels, ABX alignments and pooled heads see the same frames as
    for a codec model; an unreadable file is refused, or listed in `rejects` and left out.
`store_source(store, spec)` pairs k-means' `--source` with the reader of its store that feeds it (`decoded-mfcc`:
the audio decoded from the tokens, `features/decoded.py`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import AudioError, ConfigError
from codec2vec.corpora.audio import AudioItem, load_audio
from codec2vec.features.decoded import DECODED, StoreDecoded
from codec2vec.features.sources import FeatureSource, Inputs, parse_source
from codec2vec.frontends.grid import HOP, SAMPLE_RATE, num_frames
from codec2vec.pretrain.data import Crop
from codec2vec.pretrain.loaders import AudioSource, audio_paths, check_audio_store
from codec2vec.store import TokenStore


class StoreCodes:
    """The codes of a token store: `batch(ids) -> (codes (B, K, T), lengths (B,))`."""

    reads = "codes"

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def num_frames(self, uid: str) -> int:
        return int(self.store.num_frames(uid))

    def batch(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([self.num_frames(u) for u in ids], dtype=torch.long)  # (B,)
        t = int(lengths.max()) if len(ids) else 0
        codes = torch.zeros(len(ids), self.store.codec.num_codebooks, t, dtype=torch.long)  # (B, K, T)
        for b, uid in enumerate(ids):
            codes[b, :, : lengths[b]] = self.store[uid]
        return codes, lengths

    def codebook_vectors(self) -> Tensor | None:
        return self.store.codebook_vectors()  # (K, V, D_codec)


class StoreAudio:
    """The audio a token store was made from, on its 50 Hz grid: `batch(ids) -> (audio (B, 320 T), lengths)`."""

    reads = "audio"

    def __init__(self, store: TokenStore, manifest: str = "", what: str = "audio") -> None:
        check_audio_store(store, what)
        self.store = store
        self.audio = AudioSource(store_root=str(store.root), paths=audio_paths(store, manifest))

    def num_frames(self, uid: str) -> int:
        return int(self.store.num_frames(uid))

    def batch(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        got = self.audio.collate([Crop(u, 0, self.num_frames(u), 0) for u in ids])
        assert got.audio is not None  # an audio source's batches carry audio
        return got.audio, got.lengths  # (B, S), (B,)

    def codebook_vectors(self) -> Tensor | None:
        return None


class ClipAudio:
    """Audio files read once at 16 kHz: `batch(ids) -> (audio (B, 320 T), lengths (B,))`, T = ceil(S / 320).
    With `rejects`, an unreadable file is listed there (`path`, `id`, `reason`) and left out of `ids`."""

    reads = "audio"

    def __init__(self, items: Sequence[AudioItem], rejects: list[dict[str, Any]] | None = None) -> None:
        self.wavs: dict[str, np.ndarray] = {}
        for it in items:
            try:
                self.wavs[it.id] = load_audio(it.path, SAMPLE_RATE)  # (S,)
            except AudioError as e:
                if rejects is None:
                    raise
                rejects.append({"path": it.path, "id": it.id, "reason": str(e)})

    @property
    def ids(self) -> list[str]:
        return list(self.wavs)

    def num_frames(self, uid: str) -> int:
        return int(num_frames(len(self.wavs[uid])))

    def batch(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([self.num_frames(u) for u in ids], dtype=torch.long)  # (B,)
        audio = torch.zeros(len(ids), (int(lengths.max()) if len(ids) else 0) * HOP)  # (B, S) zero past each clip
        for b, uid in enumerate(ids):
            audio[b, : len(self.wavs[uid])] = torch.from_numpy(self.wavs[uid])
        return audio, lengths

    def codebook_vectors(self) -> Tensor | None:
        return None


def store_source(store: TokenStore, spec: str, audio: str = "") -> tuple[FeatureSource, Inputs]:
    """k-means' `--source` (`codec`, `mfcc`, `fbank` or `CKPT[:LAYER]`) and the reader of `store` it runs on:
    its codes, or the audio it was made from (`audio`: a manifest of id/path rows; "" = the recorded sources)."""
    source = parse_source(spec, store.codec.to_dict())
    if spec in DECODED:  # tokens only: the audio is decoded from the store, no source files are read
        source.prepare(None)
        return source, StoreDecoded(store)
    if source.reads == "audio":
        inputs: Inputs = StoreAudio(store, audio, source.kind if source.kind != "pretrained" else source.frontend)
        source.prepare(None)
        return source, inputs
    if source.kind == "pretrained":
        k = int(source.meta["codec"]["num_codebooks"])
        if k != store.codec.num_codebooks:
            raise ConfigError(
                f"--source {spec}: checkpoint expects K={k} codebooks, the store has K={store.codec.num_codebooks}"
            )
    inputs = StoreCodes(store)
    source.prepare(inputs.codebook_vectors())  # the codec source learns its width here
    return source, inputs


__all__ = ["ClipAudio", "StoreAudio", "StoreCodes", "store_source"]
