"""Pre-training configuration: one dataclass per stage, YAML files that are serialized dataclasses.

A `PretrainConfig` composes the model side's `ModelConfig` (model.py), `MaskingConfig` (pretrain/masking.py) and
`TargetsConfig` (pretrain/targets/base.py) with this module's `DataConfig`, `TrainConfig` and `RunConfig`. A YAML file
has one mapping per section whose keys are the field names; `model.preset` (tiny/base/large) fills the
preset sizes and the other `model.*` keys override them; `targets.clusters` and `targets.online` are nested
sections (the old flat keys, `targets.online_top_k`, still load). Command-line overrides are `a.b=c` or `a.b.c=d`
(converted to the field's type by `options.convert`, as flags and environment variables are) plus the shorthand
`targets=a,b` (or `targets=a:1.0,b:0.5` with weights).
Every mistake raises `ConfigError` naming the key and what is allowed. `sections.py` holds the dataclasses,
`checks.py` the validation and the resume policy; this module reads, overrides and writes them.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.common.options import build, unflatten
from codec2vec.model import MODEL_PRESETS, model_config
from codec2vec.pretrain.config.checks import check_label_fingerprints, check_resumable, validate
from codec2vec.pretrain.config.sections import (
    DEVICES,
    PRECISIONS,
    SECTIONS,
    DataConfig,
    PretrainConfig,
    RunConfig,
    TrainConfig,
    config_to_dict,
    section_classes,
)
from codec2vec.pretrain.targets import TargetsConfig

# --- dict <-> config -----------------------------------------------------------------------------


def config_from_dict(d: Mapping[str, Any]) -> PretrainConfig:
    """Build and validate a `PretrainConfig` from a nested dict (a parsed YAML file)."""

    if not isinstance(d, Mapping):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {type(d).__name__}")
    unknown = set(d) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section; allowed: {', '.join(SECTIONS)}")
    classes = section_classes()
    model_values = dict(d.get("model") or {})
    preset = str(model_values.pop("preset", "tiny"))
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"model.preset: unknown preset {preset!r}; allowed: {', '.join(MODEL_PRESETS)}")
    model = build(classes["model"], model_values, "model", base=model_config(preset))
    if hasattr(model, "preset"):
        model = dataclasses.replace(model, preset=preset)  # type: ignore[call-arg]
    sections: dict[str, Any] = {"model": model}
    for name in SECTIONS[1:]:
        sections[name] = build(classes[name], d.get(name) or {}, name)
    cfg = PretrainConfig(preset=preset, **sections)
    validate(cfg)
    return cfg


# --- overrides -----------------------------------------------------------------------------------


PRESET_KEYS = frozenset(k for preset in MODEL_PRESETS.values() for k in preset)  # the model keys a preset sets


# Settings a resumed run may change: freezing the teacher late, re-weighting targets, more steps (the schedule's
# decay then stretches to the new end), and what only affects logging and checkpoint files. Every other key
# defines the trained weights, so a changed value would make the run's `config.yaml` untrue: it is refused.
def apply_overrides(d: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`a.b=c` strings applied to a nested dict (values stay strings; `config_from_dict` converts them).

    Shorthands: `targets=a,b` sets `targets.names`; `targets=a:1.0,b:0.5` also sets the weights;
    `model.preset=base` sets the keys presets set (sizes, their dropouts) to that preset's; the model section's
    other keys stay (the front end, `embed_norm`, quantizer dropout), and other `model.*` overrides still apply.
    """
    out = copy.deepcopy(dict(d))
    if isinstance(out.get("targets"), dict):  # a file with the old flat target keys: nested first, so overrides win
        out["targets"] = unflatten(out["targets"], TargetsConfig.RENAMED)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value, e.g. train.steps=100")
        key, value = ov.split("=", 1)
        key = key.strip()
        old = key.partition(".")[2] if key.startswith("targets.") else ""
        key = f"targets.{TargetsConfig.RENAMED[old]}" if old in TargetsConfig.RENAMED else key
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {parts[0]!r}; allowed: {', '.join(SECTIONS)}")
        sec = out.setdefault(parts[0], {})
        if not isinstance(sec, dict):
            sec = out[parts[0]] = {}
        if key == "targets":
            names, weights = [], {}
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, w = item.partition(":")
                names.append(name)
                if w:
                    weights[name] = w
            sec["names"] = names
            sec["weights"] = weights
            continue
        if len(parts) == 1:
            raise ConfigError(f"{key}: name a field, e.g. {key}.<field>=value")
        if key == "model.preset":  # a new preset replaces what presets set (sizes, their dropouts); the file's
            for name in PRESET_KEYS:  # other model.* keys (front end, embed_norm, quantizer dropout) stay, and
                sec.pop(name, None)  # later model.* overrides still apply
        node = sec
        for p in parts[1:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = node[p] = {}
            node = child
        node[parts[-1]] = value
    return out


# --- YAML ------------------------------------------------------------------------------------------


def shipped_configs() -> dict[str, Path]:
    """The configs that ship inside the package (`codec2vec/pretrain/configs/*.yaml`), by name without `.yaml`.

    Read through `importlib.resources`, so an installed wheel finds them wherever it lives (a checkout's
    top-level `configs/` links to the same folder)."""
    from importlib.resources import files

    folder = files("codec2vec") / "pretrain" / "configs"
    return {t.name[: -len(".yaml")]: Path(str(t)) for t in folder.iterdir() if t.name.endswith(".yaml")}


def resolve_config(path: str | Path) -> Path:
    """`path` if it is a file; else the shipped config it names (`lyra_tiny`, `lyra_tiny.yaml` or
    `configs/lyra_tiny.yaml` work from any folder once the package is installed)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    name = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
    if name in shipped and (len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "configs")):
        return shipped[name]
    raise ConfigError(f"{p}: config file not found (shipped configs: {', '.join(sorted(shipped))})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = resolve_config(path)
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a mapping with sections {', '.join(SECTIONS)}")
    return d


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read a YAML config (or start from defaults when `path` is None) and apply `a.b=c` overrides."""
    d = load_yaml(path) if path is not None else {}
    try:
        return config_from_dict(apply_overrides(d, overrides))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def dump_yaml(cfg: PretrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def save_config(cfg: PretrainConfig, path: str | Path) -> None:
    """Write the resolved config atomically (temp name, fsync, rename)."""
    atomic_write(path, dump_yaml(cfg))


__all__ = [
    "DEVICES",
    "PRECISIONS",
    "SECTIONS",
    "DataConfig",
    "PretrainConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "check_label_fingerprints",
    "check_resumable",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "resolve_config",
    "shipped_configs",
    "load_yaml",
    "save_config",
    "validate",
]
