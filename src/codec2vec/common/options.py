"""One options system: a dataclass's fields are the settings, and one converter reads them from text.

A verb's flags (`cli/flags.py`), a pre-training YAML file with its `a.b=c` overrides (`pretrain/config/`) and the
demo's `CODEC2VEC_DEMO_<FIELD>` environment variables all go through `convert`: a string (or a YAML value) becomes
the field's annotated type (int, float, str, bool, `X | None`, lists and tuples from `a,b,c`, dicts from `a:1,b:2`,
nested dataclasses from mappings), and a value that does not fit is a one-line `ConfigError` naming the flag, key
or variable and the reason. `option(...)` declares a field's flag: help text, choices, a metavar, a flag name
other than the field's, whether it is a flag at all.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from typing import Any, Mapping, Sequence, TypeVar

from codec2vec.common.errors import ConfigError

T = TypeVar("T")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    factory: Any = dataclasses.MISSING,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    nargs: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its command-line description (`field(metadata=...)`): `help` and `choices` show
    in `--help`; `flag` replaces the name made from the field's (`batch_frames` -> `--batch-frames`); `nargs`
    ("+", "*") takes a list as separate words instead of `a,b,c`; `cli=False` keeps the field off the command line."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "flag": flag, "metavar": metavar, "cli": cli}
    meta["nargs"] = nargs
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    """Each field's annotation of dataclass `cls`, resolved (string annotations included)."""
    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))


def _union(key: str, value: Any, args: tuple[Any, ...]) -> Any:
    if type(None) in args and _is_none(value):
        return None
    errors = []
    for a in (a for a in args if a is not type(None)):
        try:
            return convert(key, value, a)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0] if errors else f"{key}: cannot convert {value!r}")


def _sequence(key: str, value: Any, tp: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    item = args[0] if args else Any
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    out = [convert(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    return tuple(out) if tuple in (origin, tp) else out


def _mapping(key: str, value: Any, args: tuple[Any, ...]) -> dict[Any, Any]:
    kt, vt = args if args else (Any, Any)
    if isinstance(value, str):  # "a:1,b:2"
        pairs = [p.split(":", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"{key}: expected 'name:value,...', got {value!r}")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return {convert(key, k, kt): convert(f"{key}.{k}", v, vt) for k, v in value.items()}


def _scalar(key: str, value: Any, tp: type) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            f = None if isinstance(value, bool) else float(str(value).replace("_", ""))
        except ValueError:
            f = None
        if f is None or not f.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return "" if value is None else str(value)


def convert(key: str, value: Any, tp: Any) -> Any:
    """`value` (a string from a flag, an override or the environment, or a parsed YAML value) as type `tp`.

    `key` names where the value came from (`--batch-size`, `train.steps`, `CODEC2VEC_DEMO_STEPS`); a value that
    does not fit raises `ConfigError("<key>: expected ..., got <value>")`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(key, value, args)
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        return _sequence(key, value, tp, origin, args)
    if origin in (dict, Mapping) or tp is dict:
        return _mapping(key, value, args)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, key)
    if tp in (bool, int, float, str):
        return _scalar(key, value, tp)
    return value


def build(cls: type[T], values: Any, key: str, base: T | None = None) -> T:
    """Dataclass `cls` from a mapping of field names (nested dataclasses from nested mappings), each value
    converted; fields not given keep `base`'s values (or the defaults). A class's `RENAMED` maps old flat keys to
    their nested place (`online_top_k` -> `online.top_k`), so files written before a field moved still load."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key}: expected a mapping of field names, got {values!r}")
    values = unflatten(values, getattr(cls, "RENAMED", {}))
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for k, v in values.items():
        if k not in names:
            raise ConfigError(f"{key}.{k}: unknown key; allowed: {', '.join(names)}")
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            inner = getattr(base, k) if base is not None else None
            kwargs[k] = build(tp, v, f"{key}.{k}", inner)
        else:
            kwargs[k] = convert(f"{key}.{k}", v, tp)
    if base is not None:
        return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{key}: {e}") from None


def unflatten(values: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """`values` with old flat keys moved to their nested place (`renamed`: old -> `section.name`); where both are
    given, the nested key wins. The input is not changed."""
    out: dict[str, Any] = {k: v for k, v in values.items() if k not in renamed}
    for old, new in renamed.items():
        if old not in values:
            continue
        section, _, name = new.partition(".")
        node = out.get(section)
        node = dict(node) if isinstance(node, Mapping) else {}
        node.setdefault(name, values[old])
        out[section] = node
    return out


def from_env(base: T, prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """`base` with `<prefix><FIELD>` environment variables applied (e.g. CODEC2VEC_DEMO_STEPS=100), each value
    converted to its field's type."""
    env = os.environ if environ is None else environ
    hints = field_types(type(base))
    changes = {
        f.name: convert(f"{prefix}{f.name.upper()}", env[f"{prefix}{f.name.upper()}"], hints[f.name])
        for f in dataclasses.fields(base)  # type: ignore[arg-type]
        if f"{prefix}{f.name.upper()}" in env
    }
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]


__all__ = ["build", "convert", "field_types", "from_env", "option", "unflatten"]
