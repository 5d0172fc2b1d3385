"""The recipe knobs in the training loop: a decaying quantizer-dropout schedule follows the optimizer step and
resumes exactly; `model.embed_norm` changes what the model trains on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codec2vec.pretrain.config import PretrainConfig, load_config
from conftest import make_store


def _config(store: Path, run: Path, *extra: str) -> PretrainConfig:
    return load_config(None, [
        f"data.store={store}", f"run.dir={run}", "data.crop_frames=60", "data.batch_frames=240",
        "data.dev_fraction=0.2", "data.min_frames=8", "train.device=cpu", "train.lr=2e-3", "train.warmup_steps=2",
        "train.steps=12", "train.log_every=1", "train.eval_every=6", "train.ckpt_every=6", "train.keep_checkpoints=0",
        "run.progress=off", "model.num_layers=1", "model.dim=32", "model.ffn_dim=64", "model.num_heads=2",
        "model.conv_pos_kernel=8", "model.conv_pos_groups=2", "targets=reconstruction", "model.quantizer_dropout=0.9",
        *extra,
    ])  # fmt: skip


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") != "dev"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("knobs") / "store"
    make_store(root, {f"u{i:02d}": 40 + 7 * i for i in range(20)}, k=8, v=16)
    return root


def test_decay_follows_the_step_and_resumes_exactly(store: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    pretrain(_config(store, tmp_path / "const"))
    decay = _config(store, tmp_path / "decay", "model.quantizer_dropout_schedule=decay")
    pretrain(decay)
    const, dec = _losses(tmp_path / "const"), _losses(tmp_path / "decay")
    assert len(const) == len(dec) == 12
    assert dec[0] == pytest.approx(const[0], rel=1e-6)  # step 0: the same rate, the same levels
    assert dec[1:] != pytest.approx(const[1:], rel=1e-6)  # later steps draw fewer dropped rows
    shutil.rmtree(tmp_path / "decay" / "checkpoints" / "step-00000012")
    pretrain(decay)  # resumes at step 6: the same steps draw the same levels
    assert _losses(tmp_path / "decay") == pytest.approx(dec, rel=1e-5, abs=1e-6)


def test_embed_norm_changes_the_first_loss(store: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    first = {}
    for mode in ("layernorm", "scale", "none"):
        pretrain(_config(store, tmp_path / mode, f"model.embed_norm={mode}", "train.steps=1"))
        first[mode] = _losses(tmp_path / mode)[0]
    assert len({round(v, 6) for v in first.values()}) == 3, first
