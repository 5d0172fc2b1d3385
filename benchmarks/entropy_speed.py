"""Static Huffman coding of codec codes (`codec2vec.entropy`): bits/code and encode/decode speed.

    python benchmarks/entropy_speed.py [--frames 500 50000] [--repeat 5] [--store STORE] [--json]

Two inputs:
- Lyra-like (46 x 16): real Lyra v2 codes of the two 16 kHz recordings in ../shared/speech, tiled to
  each `--frames` length. Bits/code is given fitted on both files (in-sample) and held out (fit on one
  file, code the other), against the nominal 4 bits; the per-utterance header is included.
- DAC-like (12 x 1024): Zipf-ish codes (p ~ 1/rank, a different symbol order per level), fitted on
  50k frames and measured on fresh ones.
With `--store` (any token store, e.g. one made by `store_size.py --keep`): held-out bits/code on it, fitted
on every other utterance and coded on the rest one utterance at a time (headers and padding included).
Speeds are frames/s on one core, the best of `--repeat` runs, with `packing.pack/unpack` (the store's
exact-width path) beside them for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CODEC2VEC_SHARED", HERE.parents[1] / "shared"))


def lyra_codes() -> list[np.ndarray]:
    """Real Lyra v2 codes `(46, T)` of the two 16 kHz recordings."""
    from codec2vec import get_codec
    from codec2vec.corpora.audio import load_audio

    codec = get_codec("lyra", path=str(SHARED / "codecs" / "lyra-v2"))
    names = ("lyra_sample1_16kHz.wav", "lyra_sample2_16kHz.wav")
    return [codec.encode_one(load_audio(SHARED / "speech" / n, 16000)) for n in names]


def zipf_codes(rng: np.random.Generator, k: int, v: int, t: int, orders: np.ndarray) -> np.ndarray:
    p = 1.0 / np.arange(1, v + 1)
    idx = rng.choice(v, size=(k, t), p=p / p.sum())  # (K, T) ranks
    return np.take_along_axis(orders, idx, axis=1)  # (K, T) symbols, each level its own order


def tile(codes: np.ndarray, frames: int) -> np.ndarray:
    return np.tile(codes, (1, -(-frames // codes.shape[1])))[:, :frames]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(name: str, codes: np.ndarray, model, bits: int, repeat: int) -> dict[str, float | str | int]:
    from codec2vec.store import entropy, packing

    k, t = codes.shape
    data = entropy.encode(codes, model)
    assert np.array_equal(entropy.decode(data, model, k, t), codes)
    packed = packing.pack(codes, bits)
    return {
        "input": name,
        "K": k,
        "frames": t,
        "bits_per_code": len(data) * 8 / codes.size,
        "nominal_bits": bits,
        "encode_fps": t / best_time(lambda: entropy.encode(codes, model), repeat),
        "decode_fps": t / best_time(lambda: entropy.decode(data, model, k, t), repeat),
        "pack_fps": t / best_time(lambda: packing.pack(codes, bits), repeat),
        "unpack_fps": t / best_time(lambda: packing.unpack(packed, k, bits), repeat),
    }


def store_bits(path: str) -> dict[str, float | int]:
    """Held-out bits/code on a token store: fit on even-numbered utterances, code the odd ones one by one."""
    from codec2vec.store import TokenStore
    from codec2vec.store.entropy import HuffmanModel, encode

    store = TokenStore.open(path)
    ids = store.ids()
    model = HuffmanModel.fit((store.read_numpy(u) for u in ids[0::2]), store.codec.codebook_size)
    coded = codes = 0
    for u in ids[1::2]:
        x = store.read_numpy(u)  # (K, T)
        coded += len(encode(x, model))
        codes += x.size
    return {
        "store_utterances": len(ids),
        "store_coded_frames": codes // store.codec.num_codebooks,
        "store_held_out_bits_per_code": coded * 8 / codes,
        "store_nominal_bits": store.bits,
    }


def main() -> None:
    from codec2vec.store.entropy import HuffmanModel, encode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[150, 500, 3000, 50_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--store", default=None, help="a token store to measure held-out bits/code on")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    a, b = lyra_codes()
    both = np.concatenate([a, b], axis=1)  # (46, T1 + T2)
    lyra = HuffmanModel.fit([a, b], 16)
    held_out = [len(encode(y, HuffmanModel.fit([x], 16))) * 8 / y.size for x, y in ((a, b), (b, a))]
    rng = np.random.default_rng(0)
    orders = np.stack([rng.permutation(1024) for _ in range(12)])
    dac = HuffmanModel.fit([zipf_codes(rng, 12, 1024, 50_000, orders)], 1024)
    rows = []
    for frames in args.frames:
        rows.append(measure("lyra 46x16", tile(both, frames), lyra, 4, args.repeat))
        rows.append(measure("dac 12x1024", zipf_codes(rng, 12, 1024, frames, orders), dac, 10, args.repeat))
    summary = {"lyra_frames": both.shape[1], "lyra_held_out_bits_per_code": float(np.mean(held_out)), "rows": rows}
    if args.store:
        summary.update(store_bits(args.store))
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"Lyra: {both.shape[1]} real frames (2 files), tiled; held out (fit on one file, code the other): "
        f"{summary['lyra_held_out_bits_per_code']:.3f} bits/code"
    )
    if args.store:
        print(
            f"{args.store}: {summary['store_utterances']} utterances; held out ({summary['store_coded_frames']} "
            f"frames coded one utterance at a time): {summary['store_held_out_bits_per_code']:.3f} bits/code "
            f"(nominal {summary['store_nominal_bits']})"
        )
    print(
        f"{'input':12s} {'frames':>7s} {'bits/code':>9s} {'nominal':>7s} {'encode f/s':>11s} "
        f"{'decode f/s':>11s} {'pack f/s':>11s} {'unpack f/s':>11s}"
    )
    for r in rows:
        print(
            f"{r['input']:12s} {r['frames']:7d} {r['bits_per_code']:9.3f} {r['nominal_bits']:7d} "
            f"{r['encode_fps']:11,.0f} {r['decode_fps']:11,.0f} {r['pack_fps']:11,.0f} {r['unpack_fps']:11,.0f}"
        )


if __name__ == "__main__":
    sys.exit(main())
