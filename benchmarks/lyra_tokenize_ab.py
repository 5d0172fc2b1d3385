"""Lyra tokenization, batched graphs against the shipped one-frame-per-call graphs, on the same machine and corpus:
bit-identity of the codes, and the x real time per core of the whole per-process tokenize path (read, check,
resample, encode, store, commit). A benchmark, not a test: it prints figures.

    python benchmarks/lyra_tokenize_ab.py SRC... [--rounds 5] [--levels 46] [--no-check]

Old and new run interleaved, best of `--rounds`, one thread, one process (a tokenize worker's view): wall clock
and CPU seconds of the process (on a shared, oversubscribed machine the second is the per-core figure; wall time
also counts waiting for a core). "old" is `LyraCodec.encode_reference` in place of the batched path: exactly the
codes and the TFLite calls of the previous implementation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
os.environ.setdefault("CODEC2VEC_LYRA_DIR", str(HERE.parents[1] / "shared" / "codecs" / "lyra-v2"))


def one_frame_encode(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous `LyraCodec.encode`: one utterance at a time, one 20 ms frame per TFLite call."""
    x = wav.detach().to("cpu", torch.float32).numpy()
    per = [self.encode_reference(x[b, : int(n)]) for b, n in enumerate(lengths.tolist())]
    frames = torch.tensor([c.shape[1] for c in per], dtype=torch.long)
    out = torch.zeros(len(per), self.num_codebooks, max(frames.tolist(), default=0), dtype=torch.long)
    for b, c in enumerate(per):
        out[b, :, : c.shape[1]] = torch.from_numpy(c)
    return out, frames


def tokenize_rate(codec, items: list, table: torch.Tensor) -> tuple[float, float]:
    """(audio s / wall s, audio s / CPU s) of encode_batch + store writer + commit over `items`, batches of 8."""
    from codec2vec.codecs import codec_info
    from codec2vec.store import TokenStore
    from codec2vec.tokenize import encode_batch

    with tempfile.TemporaryDirectory() as tmp:
        store = TokenStore.create(Path(tmp) / "s", codec_info(codec), table, coding="auto")
        seconds, w0, c0 = 0.0, time.perf_counter(), time.process_time()
        with store.writer() as w:
            for i in range(0, len(items), 8):
                for e in encode_batch(codec, list(items[i : i + 8])):
                    if e.codes is not None:
                        w.add(e.item.id, e.codes, seconds=e.seconds, source=e.item.path, source_bytes=e.source_bytes)
                        seconds += e.seconds
        return seconds / (time.perf_counter() - w0), seconds / (time.process_time() - c0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", nargs="+")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--levels", type=int, default=46)
    p.add_argument("--no-check", action="store_true", help="skip the bit-identity check")
    args = p.parse_args()
    torch.set_num_threads(1)
    from codec2vec import get_codec
    from codec2vec.corpora.audio import load_audio, scan_sources

    items = scan_sources(args.src)
    new, old = get_codec("lyra", num_codebooks=args.levels), get_codec("lyra", num_codebooks=args.levels)
    old.encode = types.MethodType(one_frame_encode, old)
    if not args.no_check:
        frames, bad = 0, 0
        for it in items:
            wav = load_audio(it.path, 16000)
            ref = new.encode_reference(wav)
            frames += ref.shape[1]
            bad += not np.array_equal(new.encode_one(wav), ref)
        print(f"bit-identity: {len(items)} files, {frames} frames, {bad} files differ")
    table = new.codebook_vectors()
    best = {"new": [0.0, 0.0], "old": [0.0, 0.0]}
    for r in range(args.rounds):
        for label, codec in (("new", new), ("old", old)):
            wall, cpu = tokenize_rate(codec, items, table)
            best[label] = [max(best[label][0], wall), max(best[label][1], cpu)]
        load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
        print(
            f"round {r + 1} (load {load}): "
            + "; ".join(f"{k} {w:.0f}x wall, {c:.0f}x per CPU s" for k, (w, c) in best.items())
        )
    print(f"speed-up (per CPU s): {best['new'][1] / best['old'][1]:.2f}x")


if __name__ == "__main__":
    main()
