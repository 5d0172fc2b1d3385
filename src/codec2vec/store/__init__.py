"""The token store: a corpus of codec codes on disk, compact, verified, randomly accessible.

`store.py` (`TokenStore`: open, create, read, info), `handle.py` (`StoreHandle`: what the parts below
need of an open store), `ingest.py` (what `tokenize` takes and keeps: the clear policy), `writer.py` (one locked writer, atomic shards),
`labels.py` (frame-level label sets), `verify.py`, `merge.py`, and the format's parts: `layout.py` (folders,
meta checks), `container.py` (shard and label files), `packing.py` (exact-width bit packing), `rans.py`
(blocked rANS, the default entropy coding: crops decode only their blocks; its numba kernels in
`rans_kernels.py`), `entropy.py` (per-level Huffman, earlier versions' entropy coding, still read),
`codebooks.py` (the codebook table, factored when smaller).
"""

from __future__ import annotations

from codec2vec.store.labels import LabelSet
from codec2vec.store.layout import LABEL_SUFFIX, SHARD_SUFFIX
from codec2vec.store.merge import merge_stores
from codec2vec.store.store import TokenStore
from codec2vec.store.writer import ShardWriter

__all__ = ["LABEL_SUFFIX", "SHARD_SUFFIX", "LabelSet", "ShardWriter", "TokenStore", "merge_stores"]
