"""What a pre-training run reads, checked or measured before its loop starts: the store and the label sets the
targets need (`check_inputs`, before the run folder exists) and a front end's corpus statistics
(`fit_input_statistics`: `melhubert`'s fbank mean and variance, fitted once on a fresh run)."""

from __future__ import annotations

import torch

from codec2vec.common.errors import ConfigError
from codec2vec.pretrain.config import PretrainConfig
from codec2vec.pretrain.data import open_stores
from codec2vec.pretrain.pretrainer import label_names_for
from codec2vec.pretrain.state import Run


def check_inputs(cfg: PretrainConfig) -> None:
    """Before the run folder exists: the store opens, holds `data.codec`'s codes (as does `data.dev_store`) and
    has the label sets the targets read."""
    store = open_stores(cfg.data)[0]
    have = set(store.label_names())
    for name in label_names_for(cfg):
        if name not in have:
            raise ConfigError(
                f"targets.clusters.labels={name!r}: {cfg.data.store} has no such label set (it has: "
                f"{', '.join(sorted(have)) or 'none'}); run `codec2vec kmeans ... --name {name}` first"
            )


def fit_input_statistics(run: Run) -> None:
    """A fresh run of a front end with corpus statistics (`melhubert`'s fbank mean and variance): fitted once
    here over the training utterances' audio, then saved with every checkpoint (its buffers)."""
    front = run.model.encoder.frontend
    if not hasattr(front, "fit_statistics"):
        return
    from codec2vec.frontends.fbank import utterance_audio
    from codec2vec.pretrain.loaders import AudioSource, audio_paths

    source = AudioSource(store_root=str(run.store.root), paths=audio_paths(run.store, run.cfg.data.audio))
    ids = list(run.train_ids)
    audio = utterance_audio(source, ids, {u: int(run.store.num_frames(u)) for u in ids})
    front.fit_statistics(audio)  # type: ignore[operator]
    front.to(run.device)
    if run.world > 1:  # every rank fitted the same utterances; rank 0's figures are the run's, to the last bit
        for buffer in front.buffers():
            torch.distributed.broadcast(buffer, src=0)
