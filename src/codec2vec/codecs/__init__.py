"""Codec backends behind the `Codec` protocol, chosen by name through the explicit `CODECS` dict.

Backends import their heavy dependencies (TFLite runtime, transformers) only when built.
"""

from __future__ import annotations

from typing import Any, Callable

from codec2vec.codecs.base import Codec, CodecInfo, codec_info, config_hash


def _lyra(**kw: Any) -> Codec:
    from codec2vec.codecs.lyra import LyraCodec

    return LyraCodec(**kw)


def _dac(**kw: Any) -> Codec:
    from codec2vec.codecs.hf import DacCodec

    return DacCodec(**kw)


def _encodec(**kw: Any) -> Codec:
    from codec2vec.codecs.hf import EncodecCodec

    return EncodecCodec(**kw)


def _mimi(**kw: Any) -> Codec:
    from codec2vec.codecs.hf import MimiCodec

    return MimiCodec(**kw)


CODECS: dict[str, Callable[..., Codec]] = {
    "lyra": _lyra,
    "dac": _dac,
    "encodec": _encodec,
    "mimi": _mimi,
}


def get_codec(name: str, **kwargs: Any) -> Codec:
    """Build the codec `name` (a key of `CODECS`); kwargs go to the backend (e.g. `path=`, `num_codebooks=`)."""
    try:
        factory = CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose one of {sorted(CODECS)}") from None
    return factory(**kwargs)


__all__ = ["CODECS", "Codec", "CodecInfo", "codec_info", "config_hash", "get_codec"]
