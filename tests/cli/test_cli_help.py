"""The command line as a new user meets it: `--version` from the package metadata, help that shows defaults and
the fixed choices, and the shipped configs found through `importlib.resources` from any folder."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

from codec2vec.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _help(verb: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return " ".join(sub.choices[verb].format_help().split())  # type: ignore[union-attr]


def test_version_comes_from_the_package_metadata(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"codec2vec {importlib.metadata.version('codec2vec')}"


def test_help_shows_defaults_and_fixed_choices() -> None:
    tok = _help("tokenize")
    assert "{lyra,dac,encodec,mimi}" in tok and "(default: lyra)" in tok
    assert "worker processes (default: 1)" in tok and "(default: 600.0)" in tok
    assert "--device DEVICE (default: cpu)" in tok  # an option without help text still shows its default
    assert "(default: None)" not in tok and "(default: False)" not in tok  # nothing said where nothing is set
    assert "{pr,asr,ks,sid,er,style,ic,abx}" in _help("probe") and "(default: codec,random)" in _help("probe")
    assert "reconstruction, clusters, online" in _help("pretrain")
    assert "(default: 100)" in _help("kmeans")


def test_listed_choices_are_the_dicts() -> None:
    from codec2vec.cli.common import CODEC_NAMES, PROBE_TASKS, TARGET_NAMES
    from codec2vec.codecs import CODECS
    from codec2vec.pretrain.targets import TARGETS
    from codec2vec.probe.tasks import FIELDS, TASKS

    assert CODEC_NAMES == tuple(CODECS)
    assert PROBE_TASKS == (*TASKS, "abx") and set(FIELDS) == set(PROBE_TASKS)
    assert TARGET_NAMES == tuple(TARGETS)


def test_configs_are_package_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codec2vec.demo.settings import DEFAULT_CONFIG
    from codec2vec.pretrain.config import load_config, resolve_config, shipped_configs

    pkg = Path(__import__("codec2vec").__file__).parent
    shipped = shipped_configs()
    assert {"demo", "lyra_tiny", "dac16k_base_combined"} <= set(shipped)
    assert all(p.parent == pkg / "pretrain" / "configs" for p in shipped.values())
    assert DEFAULT_CONFIG == pkg / "pretrain" / "configs" / "demo.yaml" and DEFAULT_CONFIG.is_file()
    assert (ROOT / "configs").resolve() == (
        pkg / "pretrain" / "configs"
    ).resolve()  # the checkout's configs/ is the same folder
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped ones by name
    for name in ("lyra_tiny", "lyra_tiny.yaml", "configs/lyra_tiny.yaml"):
        assert resolve_config(name) == shipped["lyra_tiny"]
    assert load_config("lyra_tiny", ["train.steps=7"]).train.steps == 7
    (tmp_path / "lyra_tiny.yaml").write_text("train:\n  steps: 3\n")  # a file of that name wins
    assert load_config("lyra_tiny.yaml").train.steps == 3
    from codec2vec.common.errors import ConfigError

    with pytest.raises(ConfigError, match="config file not found.*shipped configs: .*lyra_tiny"):
        resolve_config(os.path.join("elsewhere", "lyra_tiny.yaml"))


def test_pyproject_ships_the_configs() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "pretrain/configs/*.yaml" in data["tool"]["setuptools"]["package-data"]["codec2vec"]
