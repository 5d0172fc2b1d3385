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


def declared_layout(name: str) -> tuple[int, int, int]:
    """(K, V, D) of the codec `name` at its default operating point, read from the backend's own declared
    configuration (no weights loaded): the shape of `codebook_vectors()` of `get_codec(name)`."""
    if name == "lyra":
        from codec2vec.codecs.lyra import LATENT_DIM, MAX_LEVELS, LyraCodec

        return MAX_LEVELS, LyraCodec.codebook_size, LATENT_DIM
    if name == "dac":
        from codec2vec.codecs.dac import dac_16khz_config

        cfg = dac_16khz_config()
        return int(cfg.n_codebooks), int(cfg.codebook_size), int(cfg.hidden_size)
    if name == "encodec":
        from codec2vec.codecs.encodec import DEFAULT_CODEBOOKS, encodec_24khz_config

        cfg = encodec_24khz_config()
        return DEFAULT_CODEBOOKS, int(cfg.codebook_size), int(cfg.codebook_dim or cfg.hidden_size)
    if name == "mimi":
        from codec2vec.codecs.mimi import DEFAULT_CODEBOOKS, mimi_config

        cfg = mimi_config()
        return DEFAULT_CODEBOOKS, int(cfg.codebook_size), int(cfg.hidden_size)
    raise ValueError(f"unknown codec {name!r}; choose one of {sorted(CODECS)}")


def get_codec(name: str, **kwargs: Any) -> Codec:
    """Build the codec `name` (a key of `CODECS`); kwargs go to the backend (e.g. `path=`, `num_codebooks=`)."""
    try:
        factory = CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose one of {sorted(CODECS)}") from None
    return factory(**kwargs)


__all__ = ["CODECS", "Codec", "CodecInfo", "codec_info", "config_hash", "declared_layout", "get_codec"]
