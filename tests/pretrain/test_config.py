"""Pre-training configs: every YAML under configs/ loads and builds; overrides convert types and fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codec2vec.cli import main
from codec2vec.codecs import CODECS, declared_layout
from codec2vec.common.errors import ConfigError
from codec2vec.pretrain.config import (
    apply_overrides,
    check_resumable,
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_config,
)
from conftest import fake_info

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_configs_exist_for_the_paper_and_cpu_runs() -> None:
    names = [p.name for p in CONFIGS]
    assert any("tiny" in n and "lyra" in n for n in names), names
    for target in ("reconstruction", "clusters", "online", "combined"):
        assert any("dac" in n and target in n for n in names), (target, names)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads_round_trips_and_builds(path: Path) -> None:
    import torch

    from codec2vec.model import count_parameters
    from codec2vec.pretrain.pretrainer import build_pretrainer

    cfg = load_config(path)
    assert cfg.data.codec in CODECS, f"{path}: data.codec must name the codec the config is for"
    # A YAML file is a serialized dataclass: dump -> load gives the same config.
    assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg
    k, v, d = declared_layout(cfg.data.codec)  # the codec's own declared (K, V, D)
    info = fake_info(k, v, name=cfg.data.codec)
    label_classes = {cfg.targets.clusters.labels: 100} if "clusters" in cfg.targets.names else {}
    torch.manual_seed(0)
    with torch.device("meta"):  # sizes only: building base models for real costs seconds each
        model = build_pretrainer(
            model=cfg.model,
            masking=cfg.masking,
            targets=cfg.targets,
            codec=info,
            codebook_vectors=None,
            label_classes=label_classes,
        )
    assert [t.name for t in model.targets] == cfg.targets.names
    n = count_parameters(model.encoder.transformer)
    expected = {"tiny": (0.3e6, 2e6), "base": (80e6, 100e6), "large": (250e6, 400e6)}[cfg.preset]
    assert expected[0] < n < expected[1], (cfg.preset, n)


def test_overrides_convert_types_and_shorthands() -> None:
    cfg = load_config(
        CONFIGS[0],
        [
            "data.store=/tmp/store",
            "run.dir=/tmp/run",
            "train.steps=1_000",
            "train.lr=3e-4",
            "train.betas=0.9,0.95",
            "model.freeze_embeddings=true",
            "targets=reconstruction:1.0,online:0.5",
            "targets.online.freeze_teacher_step=500",
        ],
    )
    assert cfg.data.store == "/tmp/store" and cfg.run.dir == "/tmp/run"
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.betas == [0.9, 0.95]
    assert cfg.model.freeze_embeddings is True
    assert cfg.targets.names == ["reconstruction", "online"]
    assert cfg.targets.weights == {"reconstruction": 1.0, "online": 0.5}
    assert cfg.targets.online.freeze_teacher_step == 500
    assert (
        load_config(CONFIGS[0], ["targets.online.freeze_teacher_step=none"]).targets.online.freeze_teacher_step is None
    )
    assert (
        load_config(CONFIGS[0], ["targets.weights.online=0.25", "targets=reconstruction,online"]).targets.weights == {}
    )
    # The overrides do not touch the dict they were applied to.
    d = {"train": {"steps": 5}}
    apply_overrides(d, ["train.steps=7"])
    assert d == {"train": {"steps": 5}}


def test_preset_fills_sizes_and_explicit_keys_win() -> None:
    tiny = load_config(None)
    base = load_config(None, ["model.preset=base"])
    assert (tiny.preset, tiny.model.dim, tiny.model.num_layers) == ("tiny", 128, 4)
    assert (base.preset, base.model.dim, base.model.num_layers, base.model.ffn_dim) == ("base", 768, 12, 3072)
    assert load_config(None, ["model.preset=base", "model.num_layers=2"]).model.num_layers == 2
    assert config_to_dict(base)["model"]["preset"] == "base"


def test_a_preset_override_replaces_the_sizes_and_keeps_the_file_s_other_model_keys(tmp_path: Path) -> None:
    """`model.preset=X` on a file sets what presets set (sizes, their dropouts) and nothing else: the file's front
    end, embedding normalisation and quantizer dropout stay (a benchmark sizing the demo's recipe keeps its recipe)."""
    (tmp_path / "c.yaml").write_text(
        "model: {preset: tiny, dim: 64, embed_norm: scale, quantizer_dropout: 0.2, init: default}\n"
    )
    same = load_config(tmp_path / "c.yaml", ["model.preset=tiny"])
    assert (same.model.dim, same.model.embed_norm, same.model.quantizer_dropout) == (128, "scale", 0.2)
    base = load_config(tmp_path / "c.yaml", ["model.preset=base", "model.embed_norm=none"])
    assert (base.preset, base.model.dim, base.model.num_layers, base.model.init) == ("base", 768, 12, "default")
    assert (base.model.embed_norm, base.model.quantizer_dropout) == ("none", 0.2)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.steps=ten", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("model.nope=1", "model.nope"),
        ("model.preset=huge", "model.preset"),
        ("targets=reconstruction,mfcc", "targets.names"),
        ("targets=reconstruction,reconstruction", "targets.names"),
        ("train.precision=fp8", "train.precision"),
        ("data.codec=opus", "data.codec"),
        ("model.freeze_embeddings=maybe", "model.freeze_embeddings"),
        ("masking.prob=1.5", "masking.prob"),
        ("data.batch_frames=10", "data.batch_frames"),
        ("optim.lr=1", "optim.lr"),
        ("train.steps", "train.steps"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "extra.yaml").write_text("modle: {preset: tiny}\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(tmp_path / "extra.yaml")


OLD_FLAT_TARGETS = """
targets:
  names: [online]
  clusters_labels: km7
  clusters_temperature: 0.2
  online_top_k: 3
  online_codewords: 32
  online_freeze_teacher_step: 50
  online_reseed: true
"""


def test_old_flat_target_keys_still_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files and checkpoints written before `targets.clusters`/`targets.online` were sections load the same,
    quietly; an override under either name wins over the file."""
    import warnings

    (tmp_path / "old.yaml").write_text(OLD_FLAT_TARGETS)
    nested = load_config(
        None,
        ["targets=online", "targets.clusters.labels=km7", "targets.clusters.temperature=0.2", "targets.online.top_k=3",
         "targets.online.codewords=32", "targets.online.freeze_teacher_step=50", "targets.online.reseed=true"],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = load_config(tmp_path / "old.yaml")
        assert old.targets == nested.targets
        assert (old.targets.online.top_k, old.targets.clusters.labels, old.targets.online.reseed) == (3, "km7", True)
        assert load_config(tmp_path / "old.yaml", ["targets.online.top_k=2"]).targets.online.top_k == 2
        assert load_config(tmp_path / "old.yaml", ["targets.online_top_k=2"]).targets.online.top_k == 2
        assert load_config("lyra_tiny", ["targets.online_codewords=8"]).targets.online.codewords == 8
        # A checkpoint's saved config from before: the same config, and a resume with it is not a change.
        saved = config_to_dict(nested)
        flat = {k: v for k, v in saved["targets"].items() if k not in ("clusters", "online")}
        flat |= {f"clusters_{k}": v for k, v in saved["targets"]["clusters"].items()}
        flat |= {f"online_{k}": v for k, v in saved["targets"]["online"].items()}
        old_saved = {**saved, "targets": flat}
        assert config_from_dict(old_saved) == nested
        check_resumable(old_saved, nested)
        check_resumable(old_saved, load_config(None, ["targets=online", *_old_overrides(), "targets.online.reseed=0"]))
        with pytest.raises(ConfigError, match=r"targets\.online\.top_k \(3 -> 4\)"):
            check_resumable(
                old_saved, load_config(None, ["targets=online", *_old_overrides(), "targets.online.top_k=4"])
            )
    assert capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match=r"targets\.online\.nope: unknown key; allowed: top_k"):
        load_config(None, ["targets.online.nope=1"])
    with pytest.raises(ConfigError, match=r"targets\.online\.top_k: expected an integer, got 'x'"):
        load_config(tmp_path / "old.yaml", ["targets.online_top_k=x"])


def _old_overrides() -> list[str]:
    return [f"targets.{k}={v}" for k, v in
            [("clusters_labels", "km7"), ("clusters_temperature", "0.2"), ("online_top_k", "3"),
             ("online_codewords", "32"), ("online_freeze_teacher_step", "50"), ("online_reseed", "true")]]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=nan", "train.lr"),
        ("train.lr=5", "train.lr"),
        ("train.eps=0", "train.eps"),
        ("train.eps=inf", "train.eps"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.dim=0", "model.dim"),
        ("model.dim=100000000", "model.dim"),
        ("model.num_heads=7", "model.dim"),
        ("train.threads=5000", "train.threads"),
        ("train.grad_clip=nan", "train.grad_clip"),
    ],
)
def test_out_of_range_settings_are_one_line_errors(override: str, key: str, capsys) -> None:
    code = main(["pretrain", "configs/lyra_tiny.yaml", override, "data.store=x", "run.dir=/nonexistent/run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err
