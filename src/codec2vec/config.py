"""Pre-training configuration: one dataclass per stage, YAML files that are serialized dataclasses.

A `PretrainConfig` composes the model side's `ModelConfig` (model.py), `MaskingConfig` (masking.py) and
`TargetsConfig` (targets.py) with this module's `DataConfig`, `TrainConfig` and `RunConfig`. A YAML file
has one mapping per section whose keys are the field names; `model.preset` (tiny/base/large) fills the
preset sizes and the other `model.*` keys override them. Command-line overrides are `a.b=c` (converted
to the field's type) plus the shorthand `targets=a,b` (or `targets=a:1.0,b:0.5` with weights).
Every mistake raises `ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from codec2vec.codecs import CODECS
from codec2vec.errors import ConfigError
from codec2vec.files import atomic_write
from codec2vec.frontends import FRONTENDS
from codec2vec.masking import MaskingConfig
from codec2vec.model import MODEL_PRESETS, ModelConfig, model_config
from codec2vec.targets import TARGETS, TargetsConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# codec name -> (K, V, D_codec) of its usual token stores (DAC 16 kHz, Lyra v2 at 46 levels); used to build a
# model from a config alone (tests, parameter counts); the store's own metadata always wins when training.


@dataclass
class DataConfig:
    """Where the tokens come from and how they are cut into batches (frames are codec frames)."""

    store: str = ""  # token store directory
    codec: str = ""  # expected codec name (lyra, dac, ...); checked against the store when set
    dev_store: str = ""  # optional separate held-out store; else `dev_fraction` of `store`
    dev_fraction: float = 0.05  # ids whose hash falls below this go to dev (or manifest extra["split"])
    crop_frames: int = 780  # longest random crop (HuBERT: ~15.6 s = 780 frames at 50 Hz)
    min_frames: int = 4  # shorter utterances are skipped
    batch_frames: int = 4375  # padded frames per micro-batch over ALL processes (rows x longest row)
    bucket_pool: int = 2048  # crops sorted by length together into batches (data.py); 0 = no bucketing
    dev_batches: int = 0  # evaluation batches per dev pass; 0 = the whole dev split
    codebook_key: str = ""  # key file of a scrambled store (`codec2vec anonymize`): keyed embedding init
    audio: str = ""  # audio baselines (model.frontend waveform/mel): manifest (jsonl id/path); "" = the store's sources
    workers: int = 0  # audio baselines: loader worker processes (0 = read in the training process)


@dataclass
class TrainConfig:
    """The optimisation recipe (HuBERT Base defaults, REFERENCE.md section 7)."""

    steps: int = 400_000
    lr: float = 5e-4
    warmup_steps: int = 32_000
    final_lr_ratio: float = 0.0  # linear decay from the peak to lr * final_lr_ratio at `steps`
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.01
    grad_clip: float = 10.0  # 0 disables
    accum_steps: int = 1  # micro-batches per optimizer step
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    log_every: int = 50
    eval_every: int = 2_000  # 0 = only at the end
    ckpt_every: int = 5_000  # a checkpoint is also written at the last step
    keep_checkpoints: int = 2  # newest N kept; 0 keeps all
    threads: int = 0  # torch.set_num_threads on CPU; 0 leaves the default


@dataclass
class RunConfig:
    """Where a run writes its `config.yaml`, `metrics.jsonl`, TensorBoard logs and checkpoints."""

    dir: str = "runs/pretrain"
    tensorboard: bool = True
    progress: str = "auto"  # auto (a TTY only) | on | off


@dataclass
class PretrainConfig:
    model: ModelConfig
    masking: MaskingConfig
    targets: TargetsConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = "tiny"  # the model preset the `model` section started from


SECTIONS = ("model", "masking", "targets", "data", "train", "run")


def _section_classes() -> dict[str, type]:
    return {
        "model": ModelConfig,
        "masking": MaskingConfig,
        "targets": TargetsConfig,
        "data": DataConfig,
        "train": TrainConfig,
        "run": RunConfig,
    }


# --- type conversion ---------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    import sys

    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _convert(key: str, value: Any, tp: Any) -> Any:
    """`value` (YAML or a command-line string) as type `tp`; ConfigError naming `key` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot convert {value!r}")
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        item = args[0] if args else Any
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin in (dict, Mapping) or tp is dict:
        kt, vt = args if args else (Any, Any)
        if isinstance(value, str):  # "a:1,b:2"
            pairs = [p.split(":", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ConfigError(f"{key}: expected 'name:value,...', got {value!r}")
            value = {k.strip(): v.strip() for k, v in pairs}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_convert(key, k, kt): _convert(f"{key}.{k}", v, vt) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    return value


def _build_section(name: str, cls: type, values: Mapping[str, Any], base: Any = None) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name}: expected a mapping of field names, got {values!r}")
    types = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for k, v in values.items():
        if k not in types or k not in names:
            raise ConfigError(f"{name}.{k}: unknown key; allowed: {', '.join(names)}")
        kwargs[k] = _convert(f"{name}.{k}", v, types[k])
    if base is not None:
        return dataclasses.replace(base, **kwargs)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{name}: {e}") from None


# --- dict <-> config -----------------------------------------------------------------------------


def config_from_dict(d: Mapping[str, Any]) -> PretrainConfig:
    """Build and validate a `PretrainConfig` from a nested dict (a parsed YAML file)."""

    if not isinstance(d, Mapping):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {type(d).__name__}")
    unknown = set(d) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section; allowed: {', '.join(SECTIONS)}")
    classes = _section_classes()
    model_values = dict(d.get("model") or {})
    preset = str(model_values.pop("preset", "tiny"))
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"model.preset: unknown preset {preset!r}; allowed: {', '.join(MODEL_PRESETS)}")
    model = _build_section("model", classes["model"], model_values, base=model_config(preset))
    if hasattr(model, "preset"):
        model = dataclasses.replace(model, preset=preset)
    sections = {"model": model}
    for name in SECTIONS[1:]:
        sections[name] = _build_section(name, classes[name], d.get(name) or {})
    cfg = PretrainConfig(preset=preset, **sections)
    validate(cfg)
    return cfg


def config_to_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """The fully resolved config as plain data (the `model` section keeps its `preset` first)."""
    out: dict[str, Any] = {}
    for name in SECTIONS:
        sec = dataclasses.asdict(getattr(cfg, name))
        if name == "model":
            sec = {"preset": cfg.preset, **{k: v for k, v in sec.items() if k != "preset"}}
        out[name] = sec
    return out


def validate(cfg: PretrainConfig) -> None:
    """Cross-field checks; ConfigError names the key and what is allowed."""
    t, d, tr = cfg.targets, cfg.data, cfg.train
    names = list(t.names)
    if not names:
        raise ConfigError(f"targets.names: at least one target needed; allowed: {', '.join(TARGETS)}")
    for n in names:
        if n not in TARGETS:
            raise ConfigError(f"targets.names: unknown target {n!r}; allowed: {', '.join(TARGETS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"targets.names: a target is listed twice: {names}")
    for n, w in dict(t.weights).items():
        if n not in names:
            raise ConfigError(f"targets.weights.{n}: not among targets.names {names}")
        if w < 0:
            raise ConfigError(f"targets.weights.{n}: must be >= 0, got {w}")
    if not 0.0 <= cfg.masking.prob <= 1.0:
        raise ConfigError(f"masking.prob: must be in [0, 1], got {cfg.masking.prob}")
    if cfg.masking.span < 1:
        raise ConfigError(f"masking.span: must be >= 1, got {cfg.masking.span}")
    if not 0.0 <= d.dev_fraction < 1.0:
        raise ConfigError(f"data.dev_fraction: must be in [0, 1), got {d.dev_fraction}")
    if d.crop_frames < 1 or d.min_frames < 1 or d.min_frames > d.crop_frames:
        raise ConfigError(
            f"data.crop_frames/min_frames: need 1 <= min_frames <= crop_frames, got {d.min_frames}, {d.crop_frames}"
        )
    if d.batch_frames < d.crop_frames:
        raise ConfigError(
            f"data.batch_frames: must hold one crop (>= data.crop_frames={d.crop_frames}), got {d.batch_frames}"
        )
    for key in ("steps", "accum_steps", "log_every"):
        if getattr(tr, key) < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {getattr(tr, key)}")
    for key in ("warmup_steps", "eval_every", "ckpt_every", "keep_checkpoints", "threads"):
        if getattr(tr, key) < 0:
            raise ConfigError(f"train.{key}: must be >= 0, got {getattr(tr, key)}")
    if tr.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {tr.lr}")
    if len(tr.betas) != 2 or not all(0.0 <= b < 1.0 for b in tr.betas):
        raise ConfigError(f"train.betas: two numbers in [0, 1), got {tr.betas}")
    if tr.precision not in PRECISIONS:
        raise ConfigError(f"train.precision: {tr.precision!r}; allowed: {', '.join(PRECISIONS)}")
    if tr.device not in DEVICES:
        raise ConfigError(f"train.device: {tr.device!r}; allowed: {', '.join(DEVICES)}")
    _validate_frontend(cfg)
    if cfg.run.progress not in ("auto", "on", "off"):
        raise ConfigError(f"run.progress: {cfg.run.progress!r}; allowed: auto, on, off")
    if d.codec and d.codec not in CODECS:
        raise ConfigError(f"data.codec: unknown codec {d.codec!r}; allowed: {', '.join(CODECS)}")
    if not cfg.run.dir:
        raise ConfigError("run.dir: must name a directory")
    _check_ranges(cfg)


# key -> (low, high, what): closed bounds unless noted; every float anywhere must also be finite.
_RANGES: dict[str, tuple[float, float, str]] = {
    "train.lr": (0.0, 1.0, "in (0, 1]"),
    "train.eps": (0.0, 1.0, "in (0, 1)"),
    "train.weight_decay": (0.0, 1.0, "in [0, 1]"),
    "train.final_lr_ratio": (0.0, 1.0, "in [0, 1]"),
    "train.grad_clip": (0.0, math.inf, ">= 0 (0 disables)"),
    "model.dropout": (0.0, 1.0, "in [0, 1)"),
    "model.attention_dropout": (0.0, 1.0, "in [0, 1)"),
    "model.activation_dropout": (0.0, 1.0, "in [0, 1)"),
    "model.input_dropout": (0.0, 1.0, "in [0, 1)"),
    "model.layer_drop": (0.0, 1.0, "in [0, 1)"),
    "model.quantizer_dropout": (0.0, 1.0, "in [0, 1]"),
    "targets.clusters_temperature": (0.0, math.inf, "> 0"),
}
_OPEN_LOW = {"train.lr", "train.eps", "targets.clusters_temperature"}
_OPEN_HIGH = {"train.eps", "model.dropout", "model.attention_dropout", "model.activation_dropout"}
_OPEN_HIGH |= {"model.input_dropout", "model.layer_drop"}
_DIMS = ("num_layers", "dim", "ffn_dim", "num_heads", "conv_pos_kernel", "conv_pos_groups", "codebook_dim")
MAX_DIM = 1 << 16  # beyond any published speech model; larger sizes are typos that would exhaust memory


def _check_ranges(cfg: PretrainConfig) -> None:
    """No NaN or infinity anywhere; learning rate, eps, weight decay, dropouts, clipping, sizes and threads
    within their meaningful ranges (ConfigError naming the key)."""
    for section in SECTIONS:
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ConfigError(f"{section}.{key}: must be a finite number, got {value!r}")
    for name, (low, high, what) in _RANGES.items():
        section, key = name.split(".")
        v = getattr(getattr(cfg, section), key, None)
        if v is None:
            continue
        bad = v < low or v > high or (name in _OPEN_LOW and v <= low) or (name in _OPEN_HIGH and v >= high)
        if bad:
            raise ConfigError(f"{name}: must be {what}, got {v}")
    for key in _DIMS:
        v = getattr(cfg.model, key, None)
        if v is not None and not 1 <= v <= MAX_DIM:
            raise ConfigError(f"model.{key}: must be in [1, {MAX_DIM}], got {v}")
    heads, groups = getattr(cfg.model, "num_heads", 1), getattr(cfg.model, "conv_pos_groups", 1)
    if getattr(cfg.model, "dim", 0) % heads:
        raise ConfigError(f"model.dim: {cfg.model.dim} is not divisible by model.num_heads={heads}")
    if getattr(cfg.model, "dim", 0) % groups:
        raise ConfigError(f"model.dim: {cfg.model.dim} is not divisible by model.conv_pos_groups={groups}")
    max_threads = (os.cpu_count() or 1) * 4
    if cfg.train.threads > max_threads:
        raise ConfigError(
            f"train.threads: at most {max_threads} (4 x the {os.cpu_count()} CPUs), got {cfg.train.threads}"
        )


def _validate_frontend(cfg: PretrainConfig) -> None:

    front = cfg.model.frontend
    if front not in FRONTENDS:
        raise ConfigError(f"model.frontend: {front!r}; allowed: {', '.join(FRONTENDS)}")
    if front != "codec" and "reconstruction" in cfg.targets.names:
        raise ConfigError(
            f"targets.names: reconstruction predicts codec codes, and model.frontend={front} reads audio "
            "(there are no codes to reconstruct); use clusters or online"
        )
    if cfg.data.workers < 0:
        raise ConfigError(f"data.workers: must be >= 0, got {cfg.data.workers}")


# --- overrides -----------------------------------------------------------------------------------


# Settings a resumed run may change: freezing the teacher late, re-weighting targets, more steps (the schedule's
# decay then stretches to the new end), and what only affects logging and checkpoint files. Every other key
# defines the trained weights, so a changed value would make the run's `config.yaml` untrue: it is refused.
_RESUME_MAY_CHANGE = {
    "targets.online_freeze_teacher_step",
    "targets.weights",
    "train.steps",
    "train.threads",
    "train.keep_checkpoints",
    "train.ckpt_every",
    "train.log_every",
    "train.eval_every",
    "data.dev_batches",
    "targets.online_reseed",
    "targets.online_warn_used",
}


def check_resumable(saved: dict[str, Any], cfg: PretrainConfig) -> None:
    """Refuse a resume whose config changes anything but `_RESUME_MAY_CHANGE` (one line naming the keys)."""
    now = config_to_dict(cfg)
    changed = []
    for section in ("model", "masking", "targets", "data", "train"):
        if section not in saved:
            continue  # a checkpoint from before this section was recorded
        for key in sorted(set(saved.get(section, {})) | set(now[section])):
            a, b = saved.get(section, {}).get(key), now[section].get(key)
            if a != b and f"{section}.{key}" not in _RESUME_MAY_CHANGE:
                changed.append(f"{section}.{key} ({a!r} -> {b!r})")
    if changed:
        raise ConfigError(
            f"{', '.join(changed)}: the run directory's checkpoints were made with other settings; "
            "use a new run.dir or the recorded settings (a resume may change only "
            f"{', '.join(sorted(_RESUME_MAY_CHANGE))})"
        )


def apply_overrides(d: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`a.b=c` strings applied to a nested dict (values stay strings; `config_from_dict` converts them).

    Shorthands: `targets=a,b` sets `targets.names`; `targets=a:1.0,b:0.5` also sets the weights;
    `model.preset=base` resets the model section to that preset (other `model.*` overrides still apply).
    """
    out = copy.deepcopy(dict(d))
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value, e.g. train.steps=100")
        key, value = ov.split("=", 1)
        key = key.strip()
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
        if key == "model.preset":
            sec.clear()  # a new preset replaces the old sizes; later model.* overrides still apply
        node = sec
        for p in parts[1:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = node[p] = {}
            node = child
        node[parts[-1]] = value
    return out


# --- YAML ------------------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
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
