"""The stores of `bench --frontier`: one corpus kept as Lyra tokens at several level counts, and as audio files
(FLAC, Ogg/Opus at a few bitrates), each measured by the bytes of everything it holds.

- Token stores: the corpus is tokenized once at 46 levels; the store at N levels keeps the first N levels of
  every utterance (`privacy.anonymize_store(levels=N)`: residual quantisation is greedy, so the first N levels
  ARE the N-level encoding). Each is made before any k-means, so its kbps counts codes, index, codebook table
  and meta, not the label sets later written into it.
- Audio stores: every utterance of the token store, decoded to 16 kHz mono by `audio.load_audio` from the
  file the store was made from, written by libsndfile as 16-bit FLAC or as Ogg/Opus, one file per utterance,
  plus `manifest.jsonl` (`id`, `path`) that pre-training reads through `data.audio=` (decoded at load time).
  Opus's bitrate follows soundfile's `compression_level` (0.0: about 260 kbps, 1.0: the lowest, about 8 kbps
  on 3-second speech clips, the Ogg pages included); the level for a target kbps is found by bisection on a
  sample of the corpus's clips (`opus_level`), measured as the files' bytes, so the target holds for
  the container too.

kbps = bytes of every file under the folder x 8 / audio seconds / 1000 (`folder_kbps`), as `codec2vec info`
counts a store.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codec2vec.common.files import atomic_write

SAMPLE_RATE = 16_000


def folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under `folder` (recursively), as `TokenStore.info` counts a store: all files
    but hidden ones (a lock file)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))


def folder_kbps(folder: Path, seconds: float) -> dict[str, float]:
    """{"bytes", "seconds", "kbps"}: everything stored in `folder` per second of audio."""
    n = folder_bytes(folder)
    return {"bytes": n, "seconds": float(seconds), "kbps": n * 8 / max(float(seconds), 1e-9) / 1000}


def _encode(wav: np.ndarray, fmt: str, level: float) -> bytes:
    """One clip (S,) float32 at 16 kHz -> the bytes of a FLAC (16-bit) or Ogg/Opus file."""
    import soundfile as sf

    buf = io.BytesIO()
    if fmt == "flac":
        sf.write(buf, wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    else:
        sf.write(buf, wav, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=float(level))
    return buf.getvalue()


def opus_level(clips: Sequence[np.ndarray], kbps: float, *, iterations: int = 8) -> dict[str, float]:
    """The Opus `compression_level` whose files (Ogg pages included) come closest to `kbps` on `clips`
    (16 kHz mono): bisection, kbps falling as the level rises; 1.0 when even that is above the target.
    -> {"level", "kbps" (measured on the clips), "target"}."""
    seconds = sum(len(c) for c in clips) / SAMPLE_RATE

    def rate(level: float) -> float:
        return sum(len(_encode(c, "opus", level)) for c in clips) * 8 / seconds / 1000

    lo, hi = 0.0, 1.0
    if rate(hi) >= kbps:
        return {"level": hi, "kbps": rate(hi), "target": kbps}
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) > kbps else (lo, mid)
    best = min((lo, hi), key=lambda x: abs(rate(x) - kbps))
    return {"level": round(best, 4), "kbps": rate(best), "target": kbps}


def read_corpus(paths: dict[str, str]) -> dict[str, np.ndarray]:
    """id -> its audio as 16 kHz mono float32 (S,), read once from the file the store recorded."""
    from codec2vec.corpora.audio import load_audio

    return {uid: np.asarray(load_audio(path, SAMPLE_RATE), dtype=np.float32) for uid, path in paths.items()}


def write_audio_store(wavs: dict[str, np.ndarray], folder: Path, fmt: str, level: float = 0.0) -> dict[str, Any]:
    """Every clip as one file in `folder` (`<n>.flac` or `<n>.ogg`, n its position in id order) and
    `folder/manifest.jsonl` (`id`, absolute `path`). -> {"manifest", "format", "level", "bytes", "kbps", ...}."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = "flac" if fmt == "flac" else "ogg"
    rows = []
    for n, uid in enumerate(sorted(wavs)):
        path = folder / f"{n:06d}.{ext}"
        atomic_write(path, _encode(wavs[uid], fmt, level))
        rows.append(json.dumps({"id": uid, "path": str(path.resolve())}))
    atomic_write(folder / "manifest.jsonl", "\n".join(rows) + "\n")
    seconds = sum(len(w) for w in wavs.values()) / SAMPLE_RATE
    return {"manifest": str(folder / "manifest.jsonl"), "format": fmt, "level": level, "files": len(rows)} | (
        folder_kbps(folder, seconds)
    )


def read_cost(s: dict[str, Any], base: Path, *, limit: int = 64) -> dict[str, float]:
    """CPU seconds a training loader spends per second of audio read from store `s`: the first `limit`
    utterances (id order) read whole, once, by the reader training uses (the token store's `read`; for audio,
    `AudioSource.read`: file decode, and resampling where needed), timed with this process's CPU clock.
    -> {"cpu_seconds", "audio_seconds", "cpu_per_audio_second"}."""
    import time

    from codec2vec.pretrain.loaders import AudioSource
    from codec2vec.store import TokenStore

    store = TokenStore.open(base)
    ids = sorted(store.ids())[:limit]
    frames = {u: int(store.entry(u)["frames"]) for u in ids}
    seconds = sum(float(store.entry(u)["seconds"]) for u in ids)
    if s["kind"] == "tokens":
        tokens = TokenStore.open(s["path"])
        c0 = time.process_time()
        for u in ids:
            tokens.read(u)
    else:
        paths = {json.loads(x)["id"]: json.loads(x)["path"] for x in Path(s["manifest"]).read_text().splitlines()}
        src = AudioSource(store_root=str(base), paths=paths)
        c0 = time.process_time()
        for u in ids:
            src.read(u, 0, frames[u])
    cpu = time.process_time() - c0
    return {"cpu_seconds": cpu, "audio_seconds": seconds, "cpu_per_audio_second": cpu / max(seconds, 1e-9)}


def token_stores(base: Path, root: Path, levels: Sequence[int]) -> dict[str, dict[str, Any]]:
    """`root/lyra-<N>` for every N in `levels`: the first N levels of the store `base`, measured right after it
    is made. -> name -> {"path", "levels", "bytes", "kbps", ...}."""
    import shutil

    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.store import TokenStore

    seconds = sum(float(TokenStore.open(base).entry(u)["seconds"]) for u in TokenStore.open(base).ids())
    out = {}
    for n in levels:
        path = root / f"lyra-{n}"
        shutil.rmtree(path, ignore_errors=True)  # a stage redone: a store of other settings is replaced whole
        anonymize_store(base, path, levels=int(n))
        out[f"lyra-{n}"] = {"path": str(path), "kind": "tokens", "levels": int(n)} | folder_kbps(path, seconds)
    return out


__all__ = ["folder_bytes", "folder_kbps", "opus_level", "read_corpus", "read_cost", "token_stores",
           "write_audio_store"]  # fmt: skip
