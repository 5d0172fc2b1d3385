"""`codec2vec export`: an encoder-only, hub-style folder that loads everywhere a checkpoint does (load_model,
Upstream, the s3prl expert, a hub id from the local cache) and gives exactly the checkpoint's features; model files
follow the user's umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from conftest import structured_store, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codec2vec.pretrain.loop import pretrain

    root = tmp_path_factory.mktemp("export")
    structured_store(root / "store", n=12)
    old = os.umask(0o022)
    try:
        pretrain(tiny_config(root / "store", root / "run", "train.steps=2", "targets=reconstruction,online"))
    finally:
        os.umask(old)
    (root / "run" / "results.json").write_text(
        json.dumps(
            {"probes": [{"task": "pr", "model": "pretrained", "metric": "per", "value": 0.4321, "ci": [0.4, 0.45]}]}
        )
    )
    return root / "run"


def _features(ckpt: str | Path, codes: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    import codec2vec

    model, _ = codec2vec.load_model(ckpt)
    layers, _ = codec2vec.extract(model, codes, lengths)
    return layers


def test_export_is_encoder_only_and_gives_the_checkpoints_features(run_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from codec2vec.cli import main
    from codec2vec.features.export import export_model
    from codec2vec.pretrain.checkpoint import latest_checkpoint

    old = os.umask(0o022)
    try:
        config = export_model(run_dir, tmp_path / "hub")
    finally:
        os.umask(old)
    out = tmp_path / "hub"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    full = load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))
    exported = load_file(str(out / "model.safetensors"))
    assert any(not k.startswith("encoder.") for k in full)  # the checkpoint holds heads and a teacher ...
    assert sorted(exported) == sorted(k[len("encoder.") :] for k in full if k.startswith("encoder."))  # ... not this
    for key in ("architecture", "model", "codec", "num_codebooks", "frontend", "frame_rate", "codec2vec_version"):
        assert key in config, key
    assert json.loads((out / "config.json").read_text())["step"] == 2
    card = (out / "README.md").read_text()
    assert "| steps | 2 |" in card and "Apache-2.0" in card and "0.4321" in card  # licence, probe results
    assert "training data | 0.0" in card and "store_sha256" in (out / "config.json").read_text()
    for f in [*out.iterdir(), *latest_checkpoint(run_dir).iterdir()]:  # readable by colleagues, as the umask says
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f

    codes = torch.randint(0, 16, (2, 8, 37))
    lengths = torch.tensor([37, 20])
    for a, b in zip(_features(run_dir, codes, lengths), _features(out, codes, lengths), strict=True):
        assert torch.equal(a, b)
    assert main(["export", str(run_dir), "--out", str(out)]) == 2  # an existing folder is never overwritten
    from codec2vec.pretrain.checkpoint import check_architecture  # what the random reference checks before building

    assert check_architecture(out)["exported"] is True


def test_upstream_and_s3prl_load_an_export_and_a_cached_hub_id(
    run_dir: Path, tmp_path: Path, lyra_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from codec2vec.features.export import export_model
    from codec2vec.features.s3prl import UpstreamExpert
    from codec2vec.features.upstream import Upstream
    from codec2vec.pretrain.checkpoint import CheckpointError

    export_model(run_dir, tmp_path / "hub")
    wavs = [torch.randn(16000) * 0.1, torch.randn(8000) * 0.1]
    ref, ref_len = Upstream.from_checkpoint(run_dir, codec_path=str(lyra_dir))(wavs)
    got, got_len = Upstream.from_pretrained(tmp_path / "hub", codec_path=str(lyra_dir))(wavs)
    assert torch.equal(ref_len, got_len) and all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))

    # A hub id: offline, a model absent from the cache is a clear error; one in the cache loads.
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE.*hf download someone/c2v-tiny"):
        Upstream.from_pretrained("someone/c2v-tiny")
    commit = "0" * 40
    snap = cache / "models--someone--c2v-tiny" / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in (tmp_path / "hub").iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (cache / "models--someone--c2v-tiny" / "refs").mkdir()
    (cache / "models--someone--c2v-tiny" / "refs" / "main").write_text(commit)
    expert = UpstreamExpert("someone/c2v-tiny", codec_path=str(lyra_dir))
    hidden = expert(wavs)["hidden_states"]
    assert all(torch.equal(a, b) for a, b in zip(ref, hidden, strict=True))


def test_an_export_cannot_resume_and_a_damaged_one_is_named(run_dir: Path, tmp_path: Path) -> None:
    from codec2vec.features.export import export_model
    from codec2vec.pretrain.checkpoint import CheckpointError, load_checkpoint, load_model

    export_model(run_dir, tmp_path / "hub")
    with pytest.raises(CheckpointError, match="no training state"):
        load_checkpoint(tmp_path / "hub", with_state=True)
    blob = bytearray((tmp_path / "hub" / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (tmp_path / "hub" / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        load_model(tmp_path / "hub")


def test_checkpoint_files_follow_the_umask_and_keys_stay_private(run_dir: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.checkpoint import latest_checkpoint
    from codec2vec.privacy.keys import load_key

    for f in latest_checkpoint(run_dir).iterdir():  # written under umask 022 by the fixture
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    old = os.umask(0o022)
    try:
        load_key(tmp_path / "k.key", create=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
