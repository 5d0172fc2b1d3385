"""The on-disk feature cache that probes and `codec2vec extract` share, filled by the sources of `sources.py`.

A `FeatureSource` (`pretrained`, `codec`, `random`, ...) maps a batch of inputs to hidden states
`[n] x (B, T, D)`; its `key` names what it computes, so cached features are reused only for exactly the same
upstream.

`FeatureDir` is the cache format (and `extract`'s output): `meta.json` (format, key, layers, dim, dtype) and
shards `feats-NNNNNN.npy`, each `(frames, layers, D)` float16 with the utterances' frames concatenated, each
committed by its index `feats-NNNNNN.json` (`ids`, `offsets`, `frames`) written after the array. Arrays are
memory-mapped; `get(uid)` is a `(T, layers, D)` view. A killed writer loses at most the shard it was filling.
Codes come from a token store: a given one, or one tokenized once from the audio (`codes_for_sources`). The
continuous-input baselines' checkpoints (`model.frontend` waveform or mel) read the clips' audio instead
(`inputs.ClipAudio`); their features land in the same format.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from codec2vec.common.errors import ConfigError, StoreError
from codec2vec.common.files import atomic_file, atomic_write
from codec2vec.common.progress import Progress
from codec2vec.corpora.audio import scan_sources
from codec2vec.corpora.manifest import read_manifest
from codec2vec.features.inputs import ClipAudio, StoreCodes
from codec2vec.features.sources import AUDIO_BATCH_FRAMES, AUDIO_FRONTENDS, FeatureSource, Inputs, digest
from codec2vec.store import TokenStore
from codec2vec.tokenize import TokenizeOptions, tokenize

FORMAT = "codec2vec-features"
VERSION = 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where cached codes and features live: `cache_dir`, `$CODEC2VEC_CACHE`, or `~/.cache/codec2vec`."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("CODEC2VEC_CACHE", Path.home() / ".cache" / "codec2vec"))


def is_store(path: str | Path) -> bool:
    """Whether `path` is a token store (its meta.json names a codec, its codebooks are there)."""
    p = Path(path) / "meta.json"
    if not p.is_file():
        return False
    try:
        return "codec" in json.loads(p.read_text()) and (Path(path) / "codebooks.safetensors").exists()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def codes_for_sources(
    srcs: Sequence[str | Path],
    *,
    meta: dict[str, Any],
    cache: Path | None = None,
    codec_path: str | None = None,
    progress: bool = False,
    rejects: list[dict[str, Any]] | None = None,
) -> Any:
    """A `TokenStore` with the codes of `srcs` made by the checkpoint's codec: `srcs` itself when it is one
    token store, else the audio files/folders/manifests tokenized (once, resumably) into `cache` (the inputs
    rejected are added to `rejects` when given)."""

    want = meta["codec"]
    if len(srcs) == 1 and is_store(srcs[0]):
        store = TokenStore.open(srcs[0])
        if store.codec.config_hash != want["config_hash"]:
            raise StoreError(f"{srcs[0]}: holds {store.codec.name} codes the checkpoint was not trained on")
        return store
    if cache is None:
        raise ConfigError("audio sources need a folder for their codes (cache)")
    path = codec_path if codec_path is not None else want.get("config", {}).get("path")  # e.g. a hub id
    opts = TokenizeOptions(codec=want["name"], codec_path=path, num_codebooks=int(want["num_codebooks"]))
    summary = tokenize([str(s) for s in srcs], cache, opts, progress=progress)
    if rejects is not None:
        rejects.extend(summary["rejects"])
    if summary["rejected"]:
        first = summary["rejects"][0]
        print(
            f"codes: {summary['rejected']} inputs rejected (first: {first['path']}: {first['reason']})", file=sys.stderr
        )
    made = TokenStore.open(cache)
    if made.codec.config_hash != want["config_hash"] and codec_path is None:
        raise StoreError(f"{cache}: the codec rebuilt for the checkpoint ({made.codec.config}) is not the one it was "
                         f"trained on ({want.get('config')}); pass --codec-path")  # fmt: skip
    return made


class FeatureDir:
    """A folder of cached features (see the module docstring): `uid in fd`, `fd.get(uid) -> (T, n, D)`."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root, self.meta = root, meta
        self.layers: list[int] = list(meta["layers"])
        self.index: dict[str, tuple[int, int, int]] = {}  # uid -> (shard, offset, frames)
        self._arrays: dict[int, np.ndarray] = {}
        for idx_path in sorted(root.glob("feats-*.json")):
            shard = int(idx_path.stem.split("-")[1])
            rows = json.loads(idx_path.read_text())
            for uid, off, n in zip(rows["ids"], rows["offsets"], rows["frames"]):
                self.index[uid] = (shard, int(off), int(n))

    @classmethod
    def open(cls, root: str | Path) -> FeatureDir:
        """An existing feature folder (e.g. `codec2vec extract`'s output), for reading."""
        meta_path = Path(root) / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"{meta_path}: not a feature folder ({e})") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_path}: not a {FORMAT} folder")
        return cls(Path(root), meta)

    @classmethod
    def open_or_create(
        cls, root: str | Path, *, key: str, layers: list[int], dim: int | None, describe: dict[str, Any]
    ) -> FeatureDir:
        root = Path(root)
        meta_path = root / "meta.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_bytes())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                raise StoreError(f"{meta_path}: not a feature folder's meta.json ({e}); use another --out") from None
            if meta.get("format") != FORMAT or meta.get("key") != key or meta.get("layers") != list(layers):
                raise StoreError(
                    f"{root}: holds features of {meta.get('source', {}).get('name')} (layers {meta.get('layers')}),"
                    " not of this upstream; use another --out"
                )
            return cls(root, meta)
        root.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, "key": key, "layers": list(layers), "dim": dim}
        meta.update({"dtype": "float16", "source": describe})
        atomic_write(meta_path, json.dumps(meta, indent=1) + "\n")
        return cls(root, meta)

    def __contains__(self, uid: object) -> bool:
        return uid in self.index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def ids(self) -> list[str]:
        return list(self.index)

    @property
    def total_frames(self) -> int:
        return sum(n for _, _, n in self.index.values())

    def num_frames(self, uid: str) -> int:
        return self.index[uid][2]

    def get(self, uid: str) -> np.ndarray:
        """`(T, layers, D)` float16, memory-mapped."""
        shard, off, n = self.index[uid]
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.root / f"feats-{shard:06d}.npy", mmap_mode="r")
        return self._arrays[shard][off : off + n]

    def add(self, rows: list[tuple[str, np.ndarray]]) -> None:
        """Commit one shard of `(uid, (T, layers, D))` arrays (array first, then its index)."""
        shard = max((s for s, _, _ in self.index.values()), default=-1) + 1
        frames = [int(a.shape[0]) for _, a in rows]
        offsets = np.concatenate([[0], np.cumsum(frames)[:-1]]).tolist() if rows else []
        ids = [u for u, _ in rows]
        path = self.root / f"feats-{shard:06d}.npy"
        try:  # a full disk: numpy's short write is an OSError without errno; named here, nothing half-written kept
            with atomic_file(path) as f:
                np.save(f, np.concatenate([a for _, a in rows]))
            path = path.with_suffix(".json")
            atomic_write(path, json.dumps({"ids": ids, "offsets": offsets, "frames": frames}))
        except OSError as e:
            raise StoreError(
                f"{path}: cannot write features ({e.strerror or e}); {len(self)} utterances kept"
            ) from None
        for uid, off, n in zip(ids, offsets, frames):
            self.index[uid] = (shard, int(off), n)

    def fill(
        self,
        source: FeatureSource,
        inputs: Inputs,
        ids: Iterable[str],
        *,
        batch_frames: int = 20_000,
        shard_frames: int = 200_000,
        progress: bool = False,
    ) -> int:
        """Extract the folder's layers of `ids` not yet in it, read through `inputs` (`features/inputs.py`) in
        `source.features`' batches; commit a shard every `shard_frames` frames. Returns how many were written."""
        todo = [u for u in ids if u not in self.index]
        if not todo:
            return 0
        bar = Progress(f"features {source.name}", len(todo), unit="utt", enabled=progress)
        frames = 0
        pending: list[tuple[str, np.ndarray]] = []
        for uid, h in source.features(inputs, todo, layers=self.layers, batch_frames=batch_frames):
            pending.append((uid, h.half().numpy()))  # (T, n, D) float16
            frames += int(h.shape[0])
            bar.update(1, f"{frames:,} frames")
            if sum(a.shape[0] for _, a in pending) >= shard_frames:
                self.add(pending)
                pending = []
        if pending:
            self.add(pending)
        bar.close()
        return len(todo)


def _clips_key(rows: list[dict[str, Any]]) -> str:
    """What the features of a task folder depend on: its clips (id, file, size, mtime), not their labels, so
    task folders over the same clips (the demo's PR and SID) share their codes and features."""

    def stat(path: str) -> list[int]:
        st = os.stat(path) if os.path.exists(path) else None
        return [st.st_size, st.st_mtime_ns] if st else []

    return digest(sorted([r["id"], r["path"], *stat(r["path"])] for r in rows))


def cached_features(
    source: FeatureSource,
    data: str | Path,
    *,
    store: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FeatureDir:
    """Every layer of `source` for every utterance of a task folder (train/dev/test manifests), extracted once
    and cached under `cache_dir` keyed by the source's key and the folder's clips (`_clips_key`)."""
    data = Path(data)
    manifests = [data / f"{s}.jsonl" for s in ("train", "dev", "test")]
    missing = [str(m) for m in manifests if not m.is_file()]
    if missing:
        raise ConfigError(f"{data}: not a task folder (missing {', '.join(missing)})")
    data_key = _clips_key([r for m in manifests for r in read_manifest(m)])
    root = cache_root(cache_dir)
    if source.frontend in AUDIO_FRONTENDS:  # waveform/mel baselines: features from the clips' audio, not from codes
        if source.kind == "codec":
            raise ConfigError(f"{source.frontend} checkpoint: an audio baseline has no codec embeddings")
        fdir = FeatureDir.open_or_create(root / "features" / f"{source.key}-{data_key}", key=source.key,
                                         layers=list(range(source.num_layers)), dim=source.dim,
                                         describe=source.describe())  # fmt: skip
        clips = ClipAudio([it for it in scan_sources([str(m) for m in manifests]) if it.id not in fdir])
        fdir.fill(source, clips, clips.ids, batch_frames=AUDIO_BATCH_FRAMES, progress=progress)
        return fdir
    codes = codes_for_sources(
        [store] if store is not None else manifests,
        meta=source.meta,
        cache=root / "codes" / f"{source.meta['codec']['config_hash']}-{data_key}",
        progress=progress,
    )
    source.prepare(codes.codebook_vectors())  # the codec source learns its width here
    fdir = FeatureDir.open_or_create(
        root / "features" / f"{source.key}-{data_key}",
        key=source.key,
        layers=list(range(source.num_layers)),
        dim=source.dim,
        describe=source.describe(),
    )

    wanted = [r["id"] for m in manifests for r in read_manifest(m)]
    fdir.fill(source, StoreCodes(codes), [u for u in wanted if u in codes and u not in fdir], progress=progress)
    return fdir


__all__ = ["FeatureDir", "cache_root", "cached_features", "codes_for_sources", "is_store"]
