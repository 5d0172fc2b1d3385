"""The privacy audit's acceptance figures on a synthetic multi-speaker corpus. A benchmark: it prints figures.

    python benchmarks/privacy_audit.py [--hours 0.3] [--speakers 12] [--seed 2] [--per-speaker 8]
                                       [--decode-files 100] [--keep DIR] [--json]

Synthesises the corpus (`codec2vec synth`), tokenizes it with Lyra v2 at 46 levels, anonymises it into 16- and
4-level stores and a scrambled 46-level store (`codec2vec anonymize`), synthesises a second corpus of other
speakers as the attacker's own clear speech (for the frequency-analysis attack), and audits each store
(`codec2vec privacy-audit`): SID accuracy of the mean-pooled-embedding and code-histogram probes against chance
(and, for the scrambled store, of a probe trained on the attacker's clear tokens of the same speakers), and
log-spectrogram correlation of the publicly decoded audio with its source, against the unrelated-utterance floor.
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


def build(root: Path, hours: float, speakers: int, seed: int) -> None:
    from codec2vec.corpora.synth import SynthOptions, synth_corpus
    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.privacy.keys import load_key
    from codec2vec.tokenize import TokenizeOptions, tokenize

    for name, opts in (("corpus", SynthOptions(hours=hours, speakers=speakers, seed=seed)),
                       ("attacker_corpus", SynthOptions(hours=hours / 3, speakers=4, seed=seed + 1000))):  # fmt: skip
        if not (root / name / "all.jsonl").is_file():
            synth_corpus(root / name, opts, progress=False)
        store = root / ("lyra46" if name == "corpus" else "attacker")
        if not (store / "meta.json").is_file():
            tokenize([str(root / name / "all.jsonl")], store, TokenizeOptions(codec="lyra"), progress=False)
    key = load_key(root / "scramble.key", create=True)
    for out, kw in (("lyra16", {"levels": 16}), ("lyra4", {"levels": 4}), ("scrambled46", {"key": key})):
        if not (root / out / "meta.json").is_file():
            anonymize_store(root / "lyra46", root / out, **kw)  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.3)
    ap.add_argument("--speakers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--per-speaker", type=int, default=8)
    ap.add_argument("--decode-files", type=int, default=100)
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from codec2vec.privacy.audit import run_audit

    root = Path(args.keep or tempfile.mkdtemp(prefix="c2v-privacy-"))
    build(root, args.hours, args.speakers, args.seed)
    manifest = str(root / "corpus" / "all.jsonl")
    common = {"labels": manifest, "source_dir": manifest, "per_speaker": args.per_speaker,
              "decode_files": args.decode_files}  # fmt: skip
    reports = {name: run_audit(root / name, **common) for name in ("lyra46", "lyra16", "lyra4")}  # type: ignore[arg-type]
    key = str(root / "scramble.key")
    reports["scrambled46"] = run_audit(root / "scrambled46", key_file=key, reference=str(root / "attacker"),
                                       clear=str(root / "lyra46"), **common)  # type: ignore[arg-type]  # fmt: skip
    if args.json:
        print(json.dumps(reports))
        return 0
    print("| store | SID embedding probe | SID histogram probe | SID probe trained on clear tokens (after the "
          "frequency attack) | chance | "
          "decoded vs source (no key) | with key | frequency attack | unrelated floor |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in reports.items():
        sid, dec = r["sid"], r["decode"]
        ref = sid.get("embedding_from_clear", {}).get("accuracy")
        after = sid.get("embedding_from_clear_after_frequency_attack", {}).get("accuracy")
        cells = [name, f"{sid['embedding']['accuracy']:.3f}", f"{sid['histogram']['accuracy']:.3f}",
                 f"{ref:.3f} ({after:.3f})" if ref is not None else "-", f"{sid['embedding']['chance']:.3f}",
                 f"{dec['as_stored']:.3f}", f"{dec['with_key']:.3f}" if "with_key" in dec else "-",
                 f"{dec['frequency_attack']:.3f} ({dec['frequency_attack_codes_recovered']:.0%} of codes)"
                 if "frequency_attack" in dec else "-", f"{dec['floor_unrelated']:.3f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(f"({sid['embedding']['speakers']} speakers, {sid['embedding']['train']} labelled utterances for the "
          f"attacker, {sid['embedding']['test']} tested; {dec['files']} decoded files; work folder {root})",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
