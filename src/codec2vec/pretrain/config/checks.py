"""What a config may hold: cross-field checks and ranges (`validate`), and what a resumed run may change
(`check_resumable`). Every refusal is a `ConfigError` that names the key and what is allowed."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from codec2vec.codecs import CODECS
from codec2vec.common.errors import ConfigError
from codec2vec.common.options import unflatten
from codec2vec.frontends import EMBED_NORMS, FRONTENDS
from codec2vec.pretrain.config.sections import DEVICES, PRECISIONS, SECTIONS, PretrainConfig, config_to_dict
from codec2vec.pretrain.targets import TARGETS
from codec2vec.store import TokenStore


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
    if t.unmasked_weight < 0:
        raise ConfigError(f"targets.unmasked_weight: must be >= 0, got {t.unmasked_weight}")
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
    _check_recipe_knobs(cfg)
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
    "targets.clusters.temperature": (0.0, math.inf, "> 0"),
}
_OPEN_LOW = {"train.lr", "train.eps", "targets.clusters.temperature"}
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
        v: Any = cfg
        for part in name.split("."):
            v = getattr(v, part, None)
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
    if cfg.data.workers != "auto" and not (isinstance(cfg.data.workers, int) and cfg.data.workers >= 0):
        raise ConfigError(f"data.workers: auto or an integer >= 0, got {cfg.data.workers!r}")
    if cfg.data.prefetch < 0:
        raise ConfigError(f"data.prefetch: must be >= 0, got {cfg.data.prefetch}")


QD_SCHEDULES = ("constant", "decay")


def _check_recipe_knobs(cfg: PretrainConfig) -> None:
    """`model.embed_norm` (a choice of the codec front end) and `model.quantizer_dropout_schedule`."""
    m = cfg.model
    if m.embed_norm not in EMBED_NORMS:
        raise ConfigError(f"model.embed_norm: {m.embed_norm!r}; allowed: {', '.join(EMBED_NORMS)}")
    if m.embed_norm != "layernorm" and m.frontend != "codec":
        raise ConfigError(
            f"model.embed_norm: {m.embed_norm} normalises summed codebook embeddings, and model.frontend="
            f"{m.frontend} has none; leave it at layernorm"
        )
    if m.quantizer_dropout_schedule not in QD_SCHEDULES:
        raise ConfigError(
            f"model.quantizer_dropout_schedule: {m.quantizer_dropout_schedule!r}; allowed: {', '.join(QD_SCHEDULES)}"
        )


_RESUME_MAY_CHANGE = {
    "targets.online.freeze_teacher_step",
    "targets.weights",
    "train.steps",
    "train.max_seconds",
    "train.threads",
    "train.keep_checkpoints",
    "train.ckpt_every",
    "train.log_every",
    "train.eval_every",
    "data.dev_batches",
    "data.workers",  # how batches are read, not which: resuming stays exact
    "data.prefetch",
    "targets.online.reseed",
    "targets.online.warn_used",
}


_PATH_KEYS = {"data.store", "data.dev_store", "data.codebook_key", "data.audio"}  # compared as files, not strings


def _same_path(a: Any, b: Any) -> bool:
    """Whether two recorded paths name the same file: equal once resolved, or the same existing file."""
    if not (isinstance(a, str) and isinstance(b, str) and a and b):
        return a == b
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _section_defaults(section: Any) -> dict[str, Any]:
    """A config section's field defaults as `config_to_dict` writes them, nested sections flattened to
    `online.top_k` (fields without a default are left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    nested = {k: dataclasses.asdict(v) for k, v in out.items() if dataclasses.is_dataclass(v)}  # type: ignore[arg-type]
    out |= nested
    return _flat({k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}, section)


def _flat(values: dict[str, Any], section: Any) -> dict[str, Any]:
    """A saved or current section's values as `key -> value`, with the keys of its nested sections dotted
    (`online.top_k`); a checkpoint's old flat keys (`online_top_k`) are read under their new names."""
    nested = {f.name for f in dataclasses.fields(section) if dataclasses.is_dataclass(getattr(section, f.name))}
    out: dict[str, Any] = {}
    for k, v in unflatten(values or {}, getattr(type(section), "RENAMED", {})).items():
        if k in nested and isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def check_resumable(saved: dict[str, Any], cfg: PretrainConfig) -> None:
    """Refuse a resume whose config changes anything but `_RESUME_MAY_CHANGE` (one line naming the keys)."""
    now = config_to_dict(cfg)
    changed = []
    for section in ("model", "masking", "targets", "data", "train"):
        if section not in saved:
            continue  # a checkpoint from before this section was recorded
        defaults = _section_defaults(getattr(cfg, section))
        old, new = _flat(saved[section], getattr(cfg, section)), _flat(now[section], getattr(cfg, section))
        for key in sorted(set(old) | set(new)):
            a, b = old.get(key), new.get(key)
            if key not in old and key in defaults and b == defaults[key]:
                continue  # a field added since the checkpoint was made, at its default: the old behaviour
            if f"{section}.{key}" in _PATH_KEYS and _same_path(a, b):
                continue  # the same file named another way (relative, absolute, through a link)
            if a != b and f"{section}.{key}" not in _RESUME_MAY_CHANGE:
                changed.append(f"{section}.{key} ({a!r} -> {b!r})")
    if changed:
        raise ConfigError(
            f"{', '.join(changed)}: the run directory's checkpoints were made with other settings; "
            "use a new run.dir or the recorded settings (a resume may change only "
            f"{', '.join(sorted(_RESUME_MAY_CHANGE))})"
        )


def check_label_fingerprints(saved: dict[str, str], store: TokenStore, label_names: list[str]) -> None:
    """The label sets a run trains on are the ones its checkpoints were made with (a k-means re-fit under the
    same name would silently change a resumed run's targets)."""
    for name, fp in saved.items():
        now = store.labels(name).fingerprint if name in label_names else None
        if now is not None and now != fp:
            raise ConfigError(
                f"targets.clusters.labels: label set {name!r} in {store.root} changed since the run's "
                f"checkpoints were made (fingerprint {fp[:12]} -> {now[:12]}); use a new run.dir or the same labels"
            )
