"""Storage and tokenization: token stores at the codec's operating points next to FLAC and 16-bit PCM.

For one corpus (16 kHz mono after `audio.load_audio`), every operating point is encoded by the real codec
(`tokenize.encode_batch`, 8 utterances per call, one thread) into a real store (`TokenStore`, entropy-coded
when that saves >= 1%, else bit-packed), and measured with all of the store's files counted:
  - Lyra v2 at 16, 30 and 46 levels (3.2, 6.0 and 9.2 kbps nominal);
  - DAC 16 kHz's real layout (12 x 1024 at 50 Hz, 6 kbps nominal) with random weights (`dac_16khz_config`):
    its codes are close to uniform, so it shows the layout's cost, not trained DAC's entropy.
Each row: `codec`, `kbps` (store bytes * 8 / seconds), `ratio_to_flac`, `ratio_to_pcm16`, the order-0 entropy
of the codes (per level, over the corpus) in kbps and the store's distance from it (all files, and the code
payload alone). FLAC is libsndfile's, 16-bit, one file per utterance; PCM16 is 2 bytes per sample.
Tokenization speed is x real time per core (audio seconds / encode seconds, one thread).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

LYRA_LEVELS = (16, 30, 46)


def _entropy_bits(store: Any) -> float:
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


def encode_store(codec: Any, items: Sequence[Any], out: Path, batch: int = 8) -> tuple[Any, float, float]:
    """Encode `items` with `codec` into a new store at `out`; returns (store, audio seconds, encode seconds)."""
    from codec2vec.codecs import codec_info
    from codec2vec.store import TokenStore
    from codec2vec.tokenize import encode_batch

    store = TokenStore.create(out, codec_info(codec), codec.codebook_vectors(), coding="auto")
    seconds, spent = 0.0, 0.0
    encode_batch(codec, list(items[:1]))  # warm-up (interpreter set-up, first-call allocations): not timed
    with store.writer() as w:
        for i in range(0, len(items), batch):
            t0 = time.perf_counter()
            done = encode_batch(codec, list(items[i : i + batch]))
            spent += time.perf_counter() - t0
            for e in done:
                if e.codes is not None:
                    w.add(e.item.id, e.codes, seconds=e.seconds, source=e.item.path, source_bytes=e.source_bytes)
                    seconds += e.seconds
        w.commit()
    return TokenStore.open(out), seconds, spent


def audio_baselines(items: Sequence[Any], flac_dir: Path) -> dict[str, Any]:
    """FLAC (written to `flac_dir`, one file per utterance) and PCM16 sizes of the corpus at 16 kHz."""
    import soundfile as sf

    from codec2vec.audio import load_audio

    flac_dir.mkdir(parents=True, exist_ok=True)
    flac, samples, paths = 0, 0, {}
    for it in items:
        wav = load_audio(it.path, 16000)
        buf = io.BytesIO()
        sf.write(buf, wav, 16000, format="FLAC", subtype="PCM_16")
        path = flac_dir / f"{len(paths):06d}.flac"
        path.write_bytes(buf.getvalue())
        paths[it.id] = str(path)
        flac += len(buf.getvalue())
        samples += len(wav)
    return {"flac_bytes": flac, "pcm16_bytes": 2 * samples, "seconds": samples / 16000, "flac_paths": paths}


def _row(name: str, store: Any, flac: int, pcm: int, enc_seconds: float, audio_seconds: float) -> dict[str, Any]:
    info = store.info()
    ent = _entropy_bits(store)
    return {
        "codec": name,
        "levels": store.codec.num_codebooks,
        "coding": "entropy" if info["codes_bytes"] < store.frame_bytes * info["frames"] else "packed",
        "bytes": info["bytes"],
        "kbps": info["kbps"],
        "nominal_kbps": info["nominal_kbps"],
        "ratio_to_flac": flac / info["bytes"],
        "ratio_to_pcm16": pcm / info["bytes"],
        "entropy_kbps": ent / info["seconds"] / 1000,
        "over_entropy_all_files": info["bytes"] * 8 / ent - 1 if ent else None,
        "over_entropy_codes": info["codes_bytes"] * 8 / ent - 1 if ent else None,
        "tokenize_x_real_time_per_core": audio_seconds / max(enc_seconds, 1e-9),
    }


def measure_storage(
    items: Sequence[Any], root: Path, *, lyra_levels: Sequence[int] = LYRA_LEVELS, dac: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Storage rows (stores, FLAC, PCM16) and the stores/FLAC paths the other measurements reuse."""
    from codec2vec import get_codec

    torch.set_num_threads(1)
    base = audio_baselines(items, root / "flac")
    flac, pcm, secs = base["flac_bytes"], base["pcm16_bytes"], base["seconds"]
    rows: list[dict[str, Any]] = []
    stores: dict[str, Any] = {}
    for levels in lyra_levels:
        store, audio_s, enc_s = encode_store(get_codec("lyra", num_codebooks=levels), items, root / f"lyra{levels}")
        stores[f"lyra-{levels}"] = store
        rows.append(_row(f"lyra-{levels}", store, flac, pcm, enc_s, audio_s))
    if dac:
        from transformers import DacModel

        from codec2vec.codecs.dac import DacCodec, dac_16khz_config

        torch.manual_seed(0)
        codec = DacCodec(model=DacModel(dac_16khz_config()), path=None)
        store, audio_s, enc_s = encode_store(codec, items, root / "dac16k-layout")
        stores["dac-16k-layout"] = store
        rows.append(_row("dac-16k-layout", store, flac, pcm, enc_s, audio_s))
    for name, size in (("flac", flac), ("pcm16", pcm)):
        rows.append({"codec": name, "bytes": size, "kbps": size * 8 / secs / 1000, "ratio_to_flac": flac / size,
                     "ratio_to_pcm16": pcm / size})  # fmt: skip
    return rows, {"stores": stores, "flac_paths": base["flac_paths"], "seconds": secs}


__all__ = ["LYRA_LEVELS", "audio_baselines", "encode_store", "measure_storage"]
