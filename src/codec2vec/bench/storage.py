"""Storage and tokenization: token stores at the codec's operating points next to FLAC and 16-bit PCM.

For one corpus (16 kHz mono after `audio.load_audio`), every operating point is encoded by the real codec
(`tokenize.encode_batch`, 8 utterances per call, one thread) into a real store (`TokenStore`, entropy-coded
when that saves >= 1%, else bit-packed), and measured with all of the store's files counted:
  - Lyra v2 at 16, 30 and 46 levels (3.2, 6.0 and 9.2 kbps nominal);
  - DAC 16 kHz's real layout (12 x 1024 at 50 Hz, 6 kbps nominal) with random weights (`dac_16khz_config`):
    its codes are close to uniform, so it shows the layout's cost, not trained DAC's entropy; it runs at about
    real time on one busy CPU core, so only the corpus's first `dac_seconds` are encoded.
Each row: `codec`, `kbps` (store bytes * 8 / seconds), `ratio_to_flac`, `ratio_to_pcm16`, the order-0 entropy
of the codes (per level, over the corpus) in kbps and the store's distance from it: the code payload alone
(`over_entropy_codes`; negative where rANS codes pairs of levels, `store/rans.py`), the shards (payload, index
and models: `over_entropy_shards`) and all files (`over_entropy_all_files`; `fixed_bytes`, mostly the codebook
table, does not grow with the corpus). `coding` names the shards' coding. FLAC is libsndfile's, 16-bit, one
file per utterance; PCM16 is 2 bytes per sample.
Tokenization speed is x real time per core of the whole tokenize path in one process (`tokenize_speed`: read,
check, resample, encode in batches of 8, store and commit; audio seconds / wall seconds, and / CPU seconds of the
process; one thread, best of 3, codec built before) on the corpus's first minute (DAC: 10 s, one pass). An
earlier run's stores under the same `--out` are reused (the sizes do not change; the speed is timed again).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from codec2vec import get_codec
from codec2vec.codecs import codec_info
from codec2vec.codecs.dac import DacCodec, dac_16khz_config
from codec2vec.common.errors import ConfigError
from codec2vec.corpora.audio import load_audio
from codec2vec.store import TokenStore
from codec2vec.tokenize import encode_batch

LYRA_LEVELS = (16, 30, 46)


def _entropy_bits(store: TokenStore) -> float:
    """Order-0 entropy of the codes, summed over levels and frames (bits): sum_k H(level k) * frames."""
    k, v = store.codec.num_codebooks, store.codec.codebook_size
    counts = np.zeros((k, v), dtype=np.int64)
    for uid in store.ids():
        codes = store.read_numpy(uid)  # (K, T)
        for level in range(k):
            counts[level] += np.bincount(codes[level].astype(np.int64), minlength=v)[:v]
    frames = counts.sum(1, keepdims=True)  # (K, 1)
    p = counts / np.maximum(frames, 1)
    h = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(1)  # (K,) bits per frame per level
    return float((h * frames[:, 0]).sum())


def store_coding(store: TokenStore) -> str:
    """The coding of a store's shards ("rans", "packed", "huffman"; "mixed" when they differ)."""
    from codec2vec.store.container import read_container_index

    codings = {read_container_index(p).get("coding", "packed") for p in store.shard_paths()}
    return codings.pop() if len(codings) == 1 else "mixed"


def encode_store(codec: Any, items: Sequence[Any], out: Path, batch: int = 8) -> TokenStore:
    """Encode `items` with `codec` into a new store at `out` (an earlier bench's complete store there is reused)."""

    if (out / "meta.json").is_file():
        old = TokenStore.open(out)
        if old.codec.config_hash == codec_info(codec).config_hash and all(it.id in old for it in items):
            return old
        raise ConfigError(f"bench: {out} holds another store; use another --out")
    store = TokenStore.create(out, codec_info(codec), codec.codebook_vectors(), coding="auto")
    with store.writer() as w:
        for i in range(0, len(items), batch):
            for e in encode_batch(codec, list(items[i : i + batch])):
                if e.codes is not None:
                    w.add(e.item.id, e.codes, seconds=e.seconds, source=e.item.path, source_bytes=e.source_bytes)
        w.commit()
    return TokenStore.open(out)


def tokenize_speed(codec: Any, items: Sequence[Any], batch: int = 8, repeats: int = 3) -> tuple[float, float]:
    """x real time per core of the tokenize path in one process, as a worker and the writer run it: read and check
    each file, resample, encode (`tokenize.encode_batch`, `batch` utterances per call), queue the codes in a new
    store's writer and commit the shard. Returns (audio seconds / wall seconds, audio seconds / CPU seconds of
    this process), each the best of `repeats` passes: the second stays meaningful on a shared, oversubscribed
    machine, where wall time also counts waiting for a core. The codec is built (and warmed on one file) before
    the clock starts, as a worker's is."""
    import tempfile

    table = codec.codebook_vectors()
    encode_batch(codec, list(items[:1]))  # warm-up
    wall, cpu = 0.0, 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = TokenStore.create(Path(tmp) / "store", codec_info(codec), table, coding="auto")
            seconds, t0, c0 = 0.0, time.perf_counter(), time.process_time()
            with store.writer() as w:  # commits (writes, fsyncs) on leaving: timed
                for i in range(0, len(items), batch):
                    for e in encode_batch(codec, list(items[i : i + batch])):
                        if e.codes is not None:
                            w.add(
                                e.item.id, e.codes, seconds=e.seconds, source=e.item.path, source_bytes=e.source_bytes
                            )
                            seconds += e.seconds
            wall = max(wall, seconds / max(time.perf_counter() - t0, 1e-9))
            cpu = max(cpu, seconds / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def _first_seconds(items: Sequence[Any], seconds: dict[str, float], limit: float) -> list[Any]:
    out, total = [], 0.0
    for it in items:
        if total >= limit:
            break
        out.append(it)
        total += seconds[it.id]
    return out


def audio_baselines(items: Sequence[Any], flac_dir: Path) -> dict[str, Any]:
    """FLAC (written to `flac_dir`, one file per utterance) and PCM16 bytes of each utterance at 16 kHz."""
    import soundfile as sf

    flac_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"flac": {}, "pcm16": {}, "seconds": {}, "flac_paths": {}}
    for it in items:
        wav = load_audio(it.path, 16000)
        buf = io.BytesIO()
        sf.write(buf, wav, 16000, format="FLAC", subtype="PCM_16")
        path = flac_dir / f"{len(out['flac_paths']):06d}.flac"
        path.write_bytes(buf.getvalue())
        out["flac_paths"][it.id] = str(path)
        out["flac"][it.id] = len(buf.getvalue())
        out["pcm16"][it.id] = 2 * len(wav)
        out["seconds"][it.id] = len(wav) / 16000
    return out


def _row(name: str, store: TokenStore, flac: int, pcm: int, speed: tuple[float, float]) -> dict[str, Any]:
    info = store.info()
    ent = _entropy_bits(store)
    shards = sum(p.stat().st_size for p in store.shard_paths())  # codes + per-utterance index + models
    return {
        "codec": name,
        "levels": store.codec.num_codebooks,
        "coding": store_coding(store),
        "seconds": info["seconds"],
        "bytes": info["bytes"],
        "kbps": info["kbps"],
        "nominal_kbps": info["nominal_kbps"],
        "ratio_to_flac": flac / info["bytes"],
        "ratio_to_pcm16": pcm / info["bytes"],
        "codes_kbps": info["codes_kbps"],  # the code payload alone (no index, table or meta)
        "codes_ratio_to_flac": flac / max(1, info["codes_bytes"]),
        "entropy_kbps": ent / info["seconds"] / 1000,
        "over_entropy_all_files": info["bytes"] * 8 / ent - 1 if ent else None,
        "over_entropy_codes": info["codes_bytes"] * 8 / ent - 1 if ent else None,
        "over_entropy_shards": shards * 8 / ent - 1 if ent else None,  # codes, index (ids, sources, CRCs), models
        "fixed_bytes": info["bytes"] - shards,  # codebook table, meta.json, contents.json: not growing with hours
        "tokenize_x_real_time_per_core": speed[0],  # wall clock, one process, one thread
        "tokenize_x_real_time_per_cpu_second": speed[1],
    }


def measure_storage(
    items: Sequence[Any],
    root: Path,
    *,
    lyra_levels: Sequence[int] = LYRA_LEVELS,
    dac: bool = True,
    dac_seconds: float = 60.0,
    speed_seconds: float = 60.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Storage rows (stores, FLAC, PCM16) and the stores/FLAC paths the other measurements reuse. The DAC layout
    (random weights, slow on a CPU) encodes only the first `dac_seconds` of the corpus; its row compares with the
    FLAC and PCM16 of those same utterances. Tokenization speed is timed on the first `speed_seconds`."""

    torch.set_num_threads(1)
    base = audio_baselines(items, root / "flac")
    flac, pcm, secs = sum(base["flac"].values()), sum(base["pcm16"].values()), sum(base["seconds"].values())
    timed = _first_seconds(items, base["seconds"], speed_seconds)
    rows: list[dict[str, Any]] = []
    stores: dict[str, TokenStore] = {}
    for levels in lyra_levels:
        codec = get_codec("lyra", num_codebooks=levels)
        store = stores[f"lyra-{levels}"] = encode_store(codec, items, root / f"lyra{levels}")
        rows.append(_row(f"lyra-{levels}", store, flac, pcm, tokenize_speed(codec, timed)))
    if dac:
        from transformers import DacModel

        subset = _first_seconds(items, base["seconds"], dac_seconds)
        torch.manual_seed(0)
        codec = DacCodec(model=DacModel(dac_16khz_config()), path=None)
        store = stores["dac-16k-layout"] = encode_store(codec, subset, root / "dac16k-layout")
        sub_flac, sub_pcm = (sum(base[k][it.id] for it in subset) for k in ("flac", "pcm16"))
        speed = tokenize_speed(codec, _first_seconds(subset, base["seconds"], min(speed_seconds, 10.0)), repeats=1)
        rows.append(_row("dac-16k-layout", store, sub_flac, sub_pcm, speed))
    for name, size in (("flac", flac), ("pcm16", pcm)):
        rows.append({"codec": name, "seconds": secs, "bytes": size, "kbps": size * 8 / secs / 1000,
                     "ratio_to_flac": flac / size, "ratio_to_pcm16": pcm / size})  # fmt: skip
    return rows, {"stores": stores, "flac_paths": base["flac_paths"], "seconds": secs}


__all__ = ["LYRA_LEVELS", "audio_baselines", "encode_store", "measure_storage"]
