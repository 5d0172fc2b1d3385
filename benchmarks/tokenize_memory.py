"""Peak memory (max RSS) of `codec2vec tokenize` on a short file and on long files.

Long inputs are streamed through the codec (`audio.audio_blocks` -> `LyraCodec.encode_stream`), so the peak
should not grow with the file's length. Each run is a fresh `codec2vec tokenize` process; its peak is read
with `resource.getrusage(RUSAGE_CHILDREN)` (one child per measurement process).

    python benchmarks/tokenize_memory.py [--minutes 30] [--speech ../shared/speech]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)
"""


def peak_rss(args: list[str]) -> tuple[int, float, float]:
    """(exit status, peak RSS in MB, seconds) of one command run alone in a fresh measuring process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=True)
    rc, kb, sec = out.stdout.split()
    return int(rc), int(kb) / 1024, float(sec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--speech", default=str(Path(__file__).resolve().parents[2] / "shared" / "speech"))
    args = ap.parse_args()
    wav, sr = sf.read(Path(args.speech) / "lyra_sample1_16kHz.wav", dtype="float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        n = int(args.minutes * 60 * sr)
        long = np.tile(wav, -(-n // len(wav)))[:n]
        files = {"short 16 kHz mono": (wav, sr, 1), f"{args.minutes:g} min 16 kHz mono": (long, sr, 1)}
        from codec2vec.corpora.audio import resample

        up = resample(long, sr, 48000)
        files[f"{args.minutes:g} min 48 kHz stereo"] = (np.stack([up, 0.5 * up], axis=1), 48000, 2)
        for i, (name, (x, rate, _)) in enumerate(files.items()):
            path = Path(tmp) / f"in{i}.wav"
            sf.write(path, x, rate, subtype="PCM_16")
            del x
            rc, mb, sec = peak_rss([sys.executable, "-m", "codec2vec", "tokenize", str(path), "--out", f"{tmp}/s{i}"])
            rows.append({"input": name, "bytes": path.stat().st_size, "exit": rc, "peak_rss_mb": round(mb), "s": sec})
            print(f"{name:28s} {path.stat().st_size / 1e6:8.1f} MB file  peak RSS {mb:7.0f} MB  {sec:6.1f} s")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
