"""The audio DECODED from a store's tokens, for round-1 k-means features (`kmeans --source decoded-mfcc`).

HuBERT's round 1 clusters MFCCs of the source audio; a token store need not keep that audio (nor may it, when
private). `DecodedAudio` rebuilds it from the tokens alone with the codec that made them, found from the store's
`meta.json` as `codec2vec decode` does (`store.decode.codec_for_store`), resampled to 16 kHz and cut or
zero-padded to the store's 50 Hz grid (`320 T` samples for `T` frames). `StoreDecoded` is the feature-source reader over it (`features/inputs.py` interface): the `decoded-mfcc` source
then computes the same `(T, 78)` MFCCs as `--source mfcc` (13 MFCC + deltas + delta-deltas, `frontends.mfcc`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from codec2vec.frontends.grid import HOP, SAMPLE_RATE
from codec2vec.store import TokenStore

DECODED = ("decoded-mfcc",)  # the spectral sources (features/sources.py: SPECTRAL) that read decoded tokens


class DecodedAudio:
    """`read(uid, start, stop) -> (320 (stop - start),)` float32 samples at 16 kHz, decoded from the store's codes
    (the same interface as the audio loaders' `AudioSource.read`); the codec is built once, on first use."""

    def __init__(self, store: TokenStore, codec_path: str | None = None) -> None:
        self.store, self.codec_path = store, codec_path
        self._codec: Any = None

    def codec(self) -> Any:
        if self._codec is None:
            from codec2vec.store.decode import codec_for_store

            self._codec = codec_for_store(self.store, self.codec_path)
        return self._codec

    @torch.inference_mode()
    def read(self, uid: str, start: int, stop: int) -> np.ndarray:
        """Samples [320 start, 320 stop) of `uid`'s decoded audio at 16 kHz, zero-padded past the decoder's end."""
        from codec2vec.corpora.audio import resample

        codec = self.codec()
        codes = self.store.read(uid, start, stop)[None]  # (1, K, T)
        wav, n = codec.decode(codes, torch.tensor([codes.shape[-1]]))  # (1, S), (1,)
        audio = wav[0, : int(n[0])].float().cpu().numpy()  # (S,) at the codec's rate
        if int(codec.sample_rate) != SAMPLE_RATE:
            audio = resample(audio, int(codec.sample_rate), SAMPLE_RATE)
        want = (stop - start) * HOP
        out = np.zeros(want, dtype=np.float32)
        out[: min(want, len(audio))] = audio[:want]
        return out


class StoreDecoded:
    """A feature-source reader (`features/sources.py: Inputs`): `batch(ids) -> (audio (B, 320 T), lengths (B,))`,
    the audio decoded from the store's tokens on its 50 Hz grid, zero past each length."""

    reads = "audio"

    def __init__(self, store: TokenStore, codec_path: str | None = None) -> None:
        self.store, self.decoded = store, DecodedAudio(store, codec_path)

    def num_frames(self, uid: str) -> int:
        return int(self.store.num_frames(uid))

    def batch(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([self.num_frames(u) for u in ids], dtype=torch.long)  # (B,)
        audio = torch.zeros(len(ids), (int(lengths.max()) if len(ids) else 0) * HOP)  # (B, S)
        for b, uid in enumerate(ids):
            audio[b, : int(lengths[b]) * HOP] = torch.from_numpy(self.decoded.read(uid, 0, int(lengths[b])))
        return audio, lengths

    def codebook_vectors(self) -> Tensor | None:
        return None


__all__ = ["DECODED", "DecodedAudio", "StoreDecoded"]
