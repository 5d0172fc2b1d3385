"""Tokenization speed (x real time per core) for Lyra v2 and the DAC 16 kHz architecture, and token-store
read speed (frames/s). A benchmark, not a test: it prints figures.

    python benchmarks/tokenize_speed.py [--seconds 20] [--json]

Lyra runs the real weights (CODEC2VEC_LYRA_DIR or ../shared/codecs/lyra-v2). DAC runs the real
`descript/dac_16khz` layout (hop 320, 12 x 1024) with random weights: the same arithmetic as the real
checkpoint, which cannot be downloaded here. One thread each, so the figure is per core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
os.environ.setdefault("CODEC2VEC_LYRA_DIR", str(HERE.parents[1] / "shared" / "codecs" / "lyra-v2"))


def speech(seconds: float) -> np.ndarray:
    """Real speech (the shared Lyra samples, concatenated) of about `seconds` at 16 kHz."""
    from codec2vec.corpora.audio import load_audio

    folder = HERE.parents[1] / "shared" / "speech"
    parts = [load_audio(folder / n, 16000) for n in ("lyra_sample1_16kHz.wav", "lyra_sample2_16kHz.wav")]
    wav = np.concatenate(parts)
    return np.tile(wav, int(np.ceil(seconds * 16000 / len(wav))))[: int(seconds * 16000)]


def encode_speed(codec, wav: np.ndarray, repeats: int = 2) -> float:
    x = torch.from_numpy(wav)[None]
    n = torch.tensor([len(wav)])
    codec.encode(x[:, :16000], torch.tensor([16000]))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        codec.encode(x, n)
        best = min(best, time.perf_counter() - t)
    return len(wav) / codec.sample_rate / best


def read_speed(
    k: int, v: int, source: np.ndarray | None = None, coding: str = "auto", utterances: int = 2000, frames: int = 500
) -> dict[str, float]:
    """Reads from a store of `utterances` x `frames`: crops of `source (K, N)` codes (real ones, so that
    entropy coding applies as it would), or uniform random codes (always bit-packed)."""
    from codec2vec.codecs.base import CodecInfo, config_hash
    from codec2vec.store import TokenStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        info = CodecInfo("bench", 16000, 50.0, k, v, {"k": k, "v": v}, config_hash({"k": k, "v": v}))
        store = TokenStore.create(Path(tmp) / "s", info, torch.zeros(k, v, 8), coding=coding)
        with store.writer() as w:
            for i in range(utterances):
                if source is None:
                    codes = rng.integers(0, v, (k, frames))
                else:
                    s = int(rng.integers(0, source.shape[1] - frames))
                    codes = source[:, s : s + frames]
                w.add(f"u{i}", codes, seconds=frames / 50)
        store = TokenStore.open(Path(tmp) / "s")
        ids = store.ids()
        t = time.perf_counter()
        for uid in ids:
            store[uid]
        seq = utterances * frames / (time.perf_counter() - t)
        store = TokenStore.open(Path(tmp) / "s")  # cold checksum cache
        order = rng.permutation(len(ids))
        t = time.perf_counter()
        for i in order:
            s = int(rng.integers(0, frames - 100))
            store.read(ids[i], s, s + 100)
        crop = len(order) * 100 / (time.perf_counter() - t)
        bits = store.info()["codes_bytes"] * 8 / (utterances * frames * k)
    return {"sequential_frames_per_s": seq, "random_crop_frames_per_s": crop, "bits_per_code": bits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="audio seconds to encode per codec")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from codec2vec import get_codec
    from codec2vec.codecs.hf import DacCodec, dac_16khz_config, random_model

    wav = speech(args.seconds)
    lyra = get_codec("lyra")
    lyra_codes = lyra.encode_one(speech(60.0))  # (46, 3000) real codes
    results = {
        "lyra_x_real_time_per_core": encode_speed(lyra, wav),
        "dac16k_x_real_time_per_core": encode_speed(DacCodec(model=random_model(dac_16khz_config())), wav),
        "store_read_lyra_entropy_coded": read_speed(46, 16, lyra_codes, "auto"),
        "store_read_lyra_bit_packed": read_speed(46, 16, lyra_codes, "packed"),
        "store_read_dac16k_bit_packed": read_speed(12, 1024),
        "torch": torch.__version__,
        "cpu": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(results))
        return
    print(f"tokenize, one core, {args.seconds:.0f} s of real speech:")
    print(f"  lyra (46 x 16, real weights)        {results['lyra_x_real_time_per_core']:8.1f} x real time")
    print(f"  dac 16 kHz (12 x 1024, random init) {results['dac16k_x_real_time_per_core']:8.1f} x real time")
    for name in ("store_read_lyra_entropy_coded", "store_read_lyra_bit_packed", "store_read_dac16k_bit_packed"):
        r = results[name]
        print(
            f"  {name:<34} {r['sequential_frames_per_s']:,.0f} frames/s sequential, "
            f"{r['random_crop_frames_per_s']:,.0f} frames/s in random 100-frame crops, "
            f"{r['bits_per_code']:.3f} bits/code"
        )


if __name__ == "__main__":
    sys.exit(main())
