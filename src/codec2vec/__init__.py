"""codec2vec: self-supervised speech representations from discrete neural-codec tokens.

Importing the package is cheap: heavy modules load on first attribute access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "get_codec": ("codec2vec.codecs", "get_codec"),
    "CODECS": ("codec2vec.codecs", "CODECS"),
    "TokenStore": ("codec2vec.store", "TokenStore"),
    "load_model": ("codec2vec.pretrain.checkpoint", "load_model"),
    "extract": ("codec2vec.features.sources", "extract"),
    "Upstream": ("codec2vec.features.upstream", "Upstream"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'codec2vec' has no attribute {name!r}")


__all__ = ["CODECS", "TokenStore", "Upstream", "__version__", "extract", "get_codec", "load_model"]
