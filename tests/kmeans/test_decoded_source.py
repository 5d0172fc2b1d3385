"""`kmeans --source decoded-mfcc`: round-1 MFCCs of the audio decoded from a Lyra store's tokens, no source audio."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from codec2vec.frontends import mfcc


def test_decoded_mfcc_reads_only_tokens(tmp_path: Path, short_clips: Path, lyra_dir: Path) -> None:
    from codec2vec.features.inputs import store_source
    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore
    from codec2vec.store.decode import codec_for_store
    from codec2vec.tokenize import TokenizeOptions, tokenize

    clips = tmp_path / "clips"
    shutil.copytree(short_clips, clips)
    store_dir = tmp_path / "store"
    tokenize([str(clips)], store_dir, TokenizeOptions(codec="lyra", num_codebooks=8), progress=False)
    shutil.rmtree(clips)  # the source audio is gone: only the tokens remain
    store = TokenStore.open(store_dir)
    ids = store.ids()[:3]
    source, inputs = store_source(store, "decoded-mfcc")
    feats = {u: x[:, 0] for u, x in source.features(inputs, ids)}  # (T, 1, 78) -> (T, 78)
    codec = codec_for_store(store)
    for uid in ids:
        t = store.num_frames(uid)
        assert feats[uid].shape == (t, 78) and bool(torch.isfinite(feats[uid]).all())  # the store's 50 Hz grid
        wav, n = codec.decode(store[uid][None], torch.tensor([t]))  # (1, S): Lyra decodes at 16 kHz
        audio = torch.zeros(320 * t)
        audio[: min(320 * t, int(n[0]))] = wav[0, : min(320 * t, int(n[0]))]
        torch.testing.assert_close(feats[uid], mfcc(audio, t))
    summary = run_kmeans(str(store_dir), KMeansOptions(source="decoded-mfcc", clusters=4, name="dmfcc", n_init=1))
    assert summary["source"] == "decoded-mfcc" and summary["dim"] == 78
    labels = TokenStore.open(store_dir).labels("dmfcc")
    assert all(labels[u].shape == (store.num_frames(u),) for u in store.ids())
