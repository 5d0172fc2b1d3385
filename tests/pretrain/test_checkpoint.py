"""Checkpoints: the architecture in `meta.json` is checked against the weights' shapes before a model is built,
and a checkpoint that cannot be written is one error that leaves nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_checkpoint


def test_a_tampered_checkpoint_config_is_refused_before_the_model_is_built(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.features.sources import feature_source
    from codec2vec.model import Codec2VecEncoder
    from codec2vec.pretrain.checkpoint import CheckpointError, load_model

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    load_model(ckpt)  # sound: loads
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["config"]["model"].update(dim=512, ffn_dim=2048, num_heads=8)  # within every bound, not the weights
    (ckpt / "meta.json").write_text(json.dumps(meta))
    built: list[int] = []
    init = Codec2VecEncoder.__init__

    def spy(self, **kw):  # every encoder really allocated (not on the meta device), by width
        init(self, **kw)
        if not self.mask_embedding.is_meta:
            built.append(int(kw["config"].dim))

    monkeypatch.setattr(Codec2VecEncoder, "__init__", spy)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(ckpt)
    assert 512 not in built  # refused from the weights' shapes, before the big model was allocated
    with pytest.raises(CheckpointError, match="do not fit"):
        feature_source("random", ckpt).prepare(torch.randn(4, 16, 8))  # the probe's random reference
    assert 512 not in built


def test_a_checkpoint_write_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from codec2vec.pretrain.checkpoint import CheckpointError, latest_checkpoint

    def full(*args, **kw):  # what torch.save says when the disk fills up under it
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 6912 vs 6806")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        tiny_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000001")
    assert latest_checkpoint(tmp_path / "run") is None
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # nothing half-written left
