"""How fast `codec2vec synth` makes audio: seconds of audio per wall-clock second ("x real time").

    python benchmarks/synth_speed.py [--hours 0.2] [--speakers 8] [--workers 1] [--json]

Runs the whole corpus build (planning, eSpeak NG synthesis, resampling to 16 kHz, FLAC, manifests) into a
temporary folder. With --workers 1 everything runs in one process at a time, i.e. on one core (the figure whose
target is >= 50x). Also reports eSpeak NG synthesis alone, to show where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.2)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from codec2vec.corpora.espeak import SAMPLE_RATE, Voice, synthesize
    from codec2vec.corpora.synth import SynthOptions, synth_corpus

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = synth_corpus(
            os.path.join(tmp, "c"),
            SynthOptions(hours=args.hours, speakers=args.speakers, seed=args.seed, workers=args.workers),
            progress=False,
        )
        wall = time.perf_counter() - start
    audio = summary["hours"] * 3600

    text = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge the boxing match"
    start, spoken = time.perf_counter(), 0.0
    for k in range(40):
        wav, _ = synthesize(text, Voice(variant=("m1", "f2", "klatt", "m5")[k % 4], rate=150 + k))
        spoken += len(wav) / SAMPLE_RATE
    espeak_x = spoken / (time.perf_counter() - start)

    result = {
        "audio_seconds": round(audio, 1), "wall_seconds": round(wall, 2), "workers": args.workers,
        "x_real_time": round(audio / wall, 1), "espeak_only_x_real_time": round(espeak_x, 1),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"synth corpus: {audio:.0f} s of audio in {wall:.2f} s with {args.workers} worker(s): "
              f"{audio / wall:.0f}x real time (eSpeak NG alone: {espeak_x:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
