"""Token-store size on disk against the codec's bitrate, all files included. A benchmark: it prints figures.

    python benchmarks/store_size.py [--hours 1 2 4] [--levels 46] [--workers 2] [--keep DIR] [--json]

Synthesises `--hours` of speech (eSpeak NG, `codec2vec synth`), tokenizes it with Lyra v2 at `--levels`
levels, and prints `info`'s figures: all-files kbps, the codes' own kbps, the fixed bytes (codebook table
and meta.json) and the index bytes per utterance, with the ratio of all-files kbps to the nominal rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("CODEC2VEC_LYRA_DIR", str(HERE.parents[1] / "shared" / "codecs" / "lyra-v2"))


def measure(hours: float, levels: int, workers: int, root: Path) -> dict[str, float]:
    from codec2vec.corpora.synth import SynthOptions, synth_corpus
    from codec2vec.store import TokenStore
    from codec2vec.tokenize import TokenizeOptions, tokenize

    corpus = root / f"corpus-{hours:g}h"
    if not (corpus / "all.jsonl").is_file():
        synth_corpus(corpus, SynthOptions(hours=hours, speakers=16, seed=1, workers=workers), progress=False)
    store = root / f"lyra{levels}-{hours:g}h"
    tokenize([str(corpus / "all.jsonl")], store, TokenizeOptions(num_codebooks=levels, workers=workers), progress=False)
    info = TokenStore.open(store).info()
    fixed = (store / "codebooks.safetensors").stat().st_size + (store / "meta.json").stat().st_size
    shards = sum(p.stat().st_size for p in (store / "shards").iterdir() if not p.name.startswith("."))
    return {
        "hours": info["hours"],
        "utterances": info["utterances"],
        "bytes": info["bytes"],
        "kbps": info["kbps"],
        "codes_kbps": info["codes_kbps"],
        "nominal_kbps": info["nominal_kbps"],
        "ratio_to_nominal": info["kbps"] / info["nominal_kbps"],
        "fixed_bytes": fixed,
        "index_bytes_per_utterance": (shards - info["codes_bytes"]) / max(1, info["utterances"]),
        "ratio_to_pcm16": info["ratio_to_pcm16"],
        "ratio_to_source_flac": info["ratio_to_source"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[0.2, 1.0])
    ap.add_argument("--levels", type=int, default=46)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="folder for corpora and stores (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = [measure(h, args.levels, args.workers, root) for h in args.hours]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"Lyra v2 at {args.levels} levels, synthetic speech, all files of the store counted:")
    for r in rows:
        print(
            f"  {r['hours']:6.2f} h  {r['utterances']:6d} utts  {r['bytes']:>12,} B  {r['kbps']:6.3f} kbps "
            f"(codes {r['codes_kbps']:.3f}; x{r['ratio_to_nominal']:.3f} of nominal {r['nominal_kbps']:.1f})  "
            f"fixed {r['fixed_bytes']:,} B  index {r['index_bytes_per_utterance']:.0f} B/utt  "
            f"{r['ratio_to_source_flac']:.1f}x smaller than FLAC, {r['ratio_to_pcm16']:.1f}x than PCM16"
        )


if __name__ == "__main__":
    sys.exit(main())
