"""Round-1 k-means features from the audio DECODED from a store's tokens (`kmeans --source decoded-mfcc`).

HuBERT's round 1 clusters MFCCs of the source audio; a token store need not keep that audio (nor may it, when
private). `DecodedAudio` rebuilds it from the tokens alone with the codec that made them, found from the store's
`meta.json` as `codec2vec decode` does (`store.decode.codec_for_store`), resampled to 16 kHz and cut or
zero-padded to the store's 50 Hz grid (`320 T` samples for `T` frames). The k-means source then computes the same
`(T, 78)` MFCCs as `--source mfcc` (13 MFCC + deltas + delta-deltas, `frontends.mfcc`) from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from codec2vec.frontends.grid import HOP, SAMPLE_RATE

# k-means sources computed from decoded tokens -> the spectral feature (kmeans.SPECTRAL) they compute
DECODED = {"decoded-mfcc": "mfcc"}


class DecodedAudio:
    """`read(uid, start, stop) -> (320 (stop - start),)` float32 samples at 16 kHz, decoded from the store's codes
    (the same interface as the audio loaders' `AudioSource.read`); the codec is built once, on first use."""

    def __init__(self, store: Any, codec_path: str | None = None) -> None:
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
        from codec2vec.audio import resample

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


__all__ = ["DECODED", "DecodedAudio"]
