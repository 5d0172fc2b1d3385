"""Encode and decode speed of the `transformers` codecs, in x real time per core. A benchmark, not a test.

    python benchmarks/codec_speed.py [--seconds 10] [--codecs dac16k,encodec24k,mimi] [--decode] [--json]

Each codec runs its real architecture (`descript/dac_16khz`: hop 320, 12 x 1024, ~74M parameters;
`facebook/encodec_24khz`: hop 320, 8 of 32 levels = 6 kbps, ~15M; `kyutai/mimi`: hop 1920, 8 of 32 levels, ~80M)
with random weights: the same arithmetic as the real checkpoints, which cannot be downloaded here. Speed does
not depend on the weights' values. One thread (`torch.set_num_threads(1)`), so the figure is per core; the
input is real speech (the shared recordings, tiled) or seeded noise when they are absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "speech"


def _speech(seconds: float, rate: int) -> torch.Tensor:
    """`(1, S)` real speech at `rate` Hz, or seeded noise if the shared recordings are missing."""
    n = int(seconds * rate)
    files = [SPEECH / "lyra_sample1_16kHz.wav", SPEECH / "lyra_sample2_16kHz.wav"]
    if all(f.is_file() for f in files):
        import numpy as np

        from codec2vec.corpora.audio import load_audio

        wav = np.concatenate([load_audio(f, rate) for f in files])
        return torch.from_numpy(np.tile(wav, n // len(wav) + 1)[:n].copy())[None]
    return 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))


def _builders() -> dict[str, Callable[[], Any]]:
    from codec2vec.codecs.hf import (
        DacCodec,
        EncodecCodec,
        MimiCodec,
        dac_16khz_config,
        encodec_24khz_config,
        mimi_config,
        random_model,
    )

    return {
        "dac16k": lambda: DacCodec(model=random_model(dac_16khz_config())),
        "encodec24k": lambda: EncodecCodec(model=random_model(encodec_24khz_config()), num_codebooks=8),
        "mimi": lambda: MimiCodec(model=random_model(mimi_config()), num_codebooks=8),
    }


def _best_of(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(name: str, codec: Any, seconds: float, *, decode: bool, repeats: int) -> dict[str, Any]:
    wav = _speech(seconds, codec.sample_rate)  # (1, S)
    n = torch.tensor([wav.shape[1]])
    codec.encode(wav[:, : codec.sample_rate], torch.tensor([codec.sample_rate]))  # warm-up
    enc = _best_of(lambda: codec.encode(wav, n), repeats)
    row: dict[str, Any] = {
        "codec": name,
        "params_millions": round(sum(p.numel() for p in codec.model.parameters()) / 1e6, 1),
        "sample_rate": codec.sample_rate,
        "frame_rate": codec.frame_rate,
        "num_codebooks": codec.num_codebooks,
        "audio_seconds": seconds,
        "encode_x_real_time_per_core": round(seconds / enc, 2),
    }
    if decode:
        codes, frames = codec.encode(wav, n)
        dec = _best_of(lambda: codec.decode(codes, frames), repeats)
        row["decode_x_real_time_per_core"] = round(seconds / dec, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per timed call (default 10)")
    parser.add_argument("--codecs", default="dac16k,encodec24k,mimi", help="comma-separated subset")
    parser.add_argument("--decode", action="store_true", help="time decoding too")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs (default 2)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    builders = _builders()
    rows = []
    for name in args.codecs.split(","):
        codec = builders[name]()
        rows.append(measure(name, codec, args.seconds, decode=args.decode, repeats=args.repeats))
        del codec
    if args.json:
        print(json.dumps({"threads": 1, "cpu": platform.processor() or platform.machine(), "rows": rows}))
        return 0
    print(f"codec speed, 1 thread, random weights on the real layouts, {args.seconds:g} s of speech per call")
    for r in rows:
        dec = f"  decode {r['decode_x_real_time_per_core']:7.2f} x RT" if "decode_x_real_time_per_core" in r else ""
        print(
            f"  {r['codec']:<11} {r['params_millions']:5.1f}M  {r['frame_rate']:5g} Hz x {r['num_codebooks']:2d}"
            f"  encode {r['encode_x_real_time_per_core']:7.2f} x RT{dec}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
