"""A verb's flags made from its options dataclass, and the dataclass made back from the parsed flags.

Each field is one flag: the name from the field's (`batch_size` -> `--batch-size`, or `option(flag=...)`), the
default from the field, help text and choices from its metadata (`options.option`). A `bool` field that is off by
default is a switch (`--retry-rejects`); one that is on by default is switched off (`--no-dac`). Lists and tuples
are comma-separated (`--sizes tiny,base`), or separate words where the metadata says `nargs` (`--layers 0 4`).
The parser keeps each value as typed; `from_args` converts it with `options.convert`, so a bad value is the same
one-line `ConfigError` as in a config file (`--clusters: expected an integer, got 'x'`, exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from codec2vec.common.options import convert, field_types

T = TypeVar("T")
_Container = argparse.ArgumentParser | argparse._ArgumentGroup


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _text(value: Any) -> Any:
    """A default as the flag is written: lists and tuples comma-separated."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def flag_name(f: dataclasses.Field[Any]) -> str:
    """The flag of field `f`: its metadata's `flag`, else `--` and the name with dashes (`--no-x` for a switch
    that is on by default)."""
    if f.metadata.get("flag"):
        return str(f.metadata["flag"])
    name = f.name.replace("_", "-")
    return f"--no-{name}" if _default(f) is True else f"--{name}"


def cli_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of `cls` that are flags (`option(cli=False)` keeps one off the command line)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_options(p: _Container, cls: type, *, sparse: bool = False) -> None:
    """One flag per field of dataclass `cls` on parser or group `p`. A flag `p` already has for a field of the same
    name is shared (it sets both dataclasses' field, as `--threads` does for `bench` and `bench --quality`); for
    another field it is refused. `sparse`: flags not given stay out of the namespace (`from_args` then keeps the
    base's value), and the help names the dataclass's default."""
    hints = field_types(cls)
    taken = p._option_string_actions  # shared by a parser and its groups
    for f in cli_fields(cls):
        flag = flag_name(f)
        if flag in taken:
            if taken[flag].dest != f.name:  # one flag for two settings: a mistake in the dataclasses
                raise ValueError(f"{cls.__name__}.{f.name}: {flag} already sets {taken[flag].dest}")
            continue
        default = _default(f)
        help_ = f.metadata.get("help") or None
        if sparse and not (default is None or isinstance(default, bool) or default in ("", [], ())):
            help_ = f"{help_ or ''} (default: {_text(default)})".strip()
        kw: dict[str, Any] = {"dest": f.name, "help": help_}
        if hints[f.name] is bool:
            kw["action"] = "store_false" if default is True else "store_true"
        else:
            kw["nargs"] = f.metadata.get("nargs")
            kw["choices"] = f.metadata.get("choices")
            kw["metavar"] = f.metadata.get("metavar") or (
                None if kw["choices"] else flag.lstrip("-").replace("-", "_").upper()  # choices show as {a,b}
            )
        kw["default"] = argparse.SUPPRESS if sparse else default if kw.get("nargs") else _text(default)
        p.add_argument(flag, **kw)


def add_verb(
    p: argparse.ArgumentParser, cls: type, arguments: dict[str, dict[str, Any]], *, json: str | None = "the summary"
) -> None:
    """A verb's parser: its own arguments (`arguments`: name -> `add_argument` keywords, positionals and required
    flags first), one flag per field of options dataclass `cls`, then `--json` ("print `json` as JSON"; None: none)."""
    for name, kw in arguments.items():
        p.add_argument(name, **kw)
    add_options(p, cls)
    if json is not None:
        p.add_argument("--json", action="store_true", help=f"print {json} as JSON")


def _inner(tp: Any) -> Any:
    """`X | None` -> X: a value given on the command line is never None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else typing.Union[tuple(args)]


def from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """`cls` from the flags `add_options` made: each value in `args` converted to its field's type (a
    `ConfigError` naming the flag otherwise); fields without a value keep `base`'s (or the defaults)."""
    hints = field_types(cls)
    given = vars(args)
    kwargs = {
        f.name: convert(flag_name(f), given[f.name], hints[f.name] if given[f.name] is None else _inner(hints[f.name]))
        for f in cli_fields(cls)
        if f.name in given
    }
    if base is not None:
        return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
    return cls(**kwargs)


__all__ = ["add_options", "cli_fields", "flag_name", "from_args"]
