"""`codec2vec bench`: the efficiency claims side by side, on one corpus, in one run (Codec2Vec's 16.5x storage
and 2.3x training-time claims, checked on the user's own data and hardware).

  storage.py     token stores (Lyra 16/30/46 levels, DAC-16k layout) vs FLAC and PCM16; order-0 entropy;
                 tokenization speed per codec (x real time per core)
  reads.py       random-crop read speed of each store vs FLAC decoding (frames/s, one core)
  throughput.py  pre-training steps, data loading included, for the codec, waveform and mel front ends at
                 `tiny` and `base` on the same batch in audio seconds; step breakdown, front-end share,
                 peak memory, and a torch.profiler view of where a step's time goes
  plot.py        the PNG of the comparisons
  quality.py     `--quality`: controlled quality: codec, waveform and mel models of one size pre-trained for
                 equal steps or CPU time, several seeds, own recipe and a same-targets control, then probed
  schedule.py    the budgets (`steps`, `cpu`) and the round-robin interleaving of the runs
  compare.py     mean and sd over seeds, paired deltas between models, verdicts, the text table and PNG

`run_bench(srcs, options) -> dict` returns the README's JSON: `storage` rows (`codec`, `kbps`,
`ratio_to_flac`, ...), `throughput` rows (`model`, `size`, `audio_seconds_per_second`, `steps_per_second`,
...), plus `reads`, `loader` (read speed against what a base model consumes, and how many loader processes
that needs), `corpus` and `machine`. Without SRC a synthetic corpus is made (`codec2vec synth`).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from codec2vec.bench.plot import plot
from codec2vec.bench.reads import measure_reads
from codec2vec.bench.storage import measure_storage
from codec2vec.bench.throughput import loader_needs, measure_throughput
from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.common.options import option
from codec2vec.common.progress import heartbeat
from codec2vec.corpora.audio import scan_sources
from codec2vec.corpora.synth import SynthOptions, synth_corpus
from codec2vec.store import TokenStore


@dataclass
class BenchOptions:
    """What `bench` measures, and how long it may take."""

    # folder for the stores, FLAC files, bench.json and bench.png ("" = a temporary folder)
    out: str = option("", help="keep stores, FLAC files, bench.json and bench.png here")
    # a smoke run: tiny models, one timed step, Lyra 16 and 46 only, no DAC, no subprocesses
    quick: bool = option(False, help="a smoke run: tiny models, one step, no DAC (--quality: 2 steps each)")
    sizes: list[str] = option(factory=lambda: ["tiny", "base"], help="model presets, comma-separated")
    frontends: list[str] = option(factory=lambda: ["codec", "waveform", "mel"], help="front ends, comma-separated")
    # audio seconds per step (padded), the same for every front end
    batch_seconds: float = option(20.0, help="audio seconds per step (all front ends)")
    crop_seconds: float = option(10.0)
    steps: int = option(3, help="timed steps per configuration (after one warm-up)")
    threads: int = option(1, help="intra-op threads per configuration")  # the "per core" figures
    device: str = option("auto", choices=("auto", "cpu", "cuda"))
    synth_hours: float = option(0.1, help="size of the corpus made when no SRC is given")
    dac: bool = option(True, help="skip the DAC-16k layout store")
    # audio the DAC layout encodes (random weights; about real time on a busy CPU)
    dac_seconds: float = option(60.0, help="audio the DAC layout encodes (slow on CPU)")
    profile: bool = option(True, help="skip the torch.profiler view of where a step's time goes")
    parts: list[str] = option(  # storage always runs
        factory=lambda: ["storage", "reads", "throughput"], help="what to measure (storage always runs)"
    )


def _note(progress: bool, msg: str) -> None:
    if progress:
        print(f"bench: {msg}", file=sys.stderr, flush=True)


def _corpus(srcs: Sequence[str], root: Path, opts: BenchOptions, progress: bool) -> list[Any]:

    if not srcs:
        hours = 0.01 if opts.quick else opts.synth_hours
        _note(progress, f"no SRC given: synthesising {hours:g} h of speech (eSpeak NG)")
        synth_corpus(root / "corpus", SynthOptions(hours=hours, speakers=8, seed=0), progress=progress)
        srcs = [str(root / "corpus" / "all.jsonl")]
    items = scan_sources(srcs)
    if not items:
        raise ConfigError(f"bench: no audio found in {', '.join(srcs)}")
    return items


def _specs(
    opts: BenchOptions, stores: dict[str, TokenStore], paths: dict[str, str], device: str
) -> list[dict[str, Any]]:
    codec_stores = [k for k in ("lyra-46", "dac-16k-layout") if k in stores]
    audio_store = str(stores[codec_stores[0]].root)
    common = dict(
        batch_frames=int(opts.batch_seconds * 50), crop_frames=int(opts.crop_seconds * 50), paths=paths,
        audio_store=audio_store, steps=opts.steps, threads=opts.threads, device=device,
    )  # fmt: skip
    specs = []
    for size in opts.sizes:
        for front in opts.frontends:
            for codec in codec_stores if front == "codec" else [""]:
                profile = opts.profile and size == opts.sizes[-1] and (codec in ("", codec_stores[-1]))
                store = str(stores[codec].root) if codec else audio_store
                specs.append({**common, "frontend": front, "size": size, "codec": codec, "store": store,
                              "profile": profile and front in ("codec", "waveform")})  # fmt: skip
    return specs


def run_bench(srcs: Sequence[str], opts: BenchOptions, *, progress: bool = False) -> dict[str, Any]:
    """Run every measurement on the corpus `srcs` (audio files, folders, manifests); returns the JSON object."""
    import torch

    if opts.quick:
        opts.sizes, opts.steps, opts.dac, opts.profile = ["tiny"], 1, False, False
        opts.batch_seconds, opts.crop_seconds = min(opts.batch_seconds, 4.0), min(opts.crop_seconds, 2.0)
    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        items = _corpus(srcs, root, opts, progress)
        _note(progress, f"storage: {len(items)} utterances; Lyra levels, DAC layout, FLAC, PCM16")
        levels = (16, 46) if opts.quick else (16, 30, 46)
        with heartbeat("bench: storage", progress):  # a plain line every CODEC2VEC_PROGRESS_SECONDS in a log
            storage, made = measure_storage(
                items, root / "stores", lyra_levels=levels, dac=opts.dac, dac_seconds=opts.dac_seconds
            )
        _note(progress, "read speed: random crops from each store and from FLAC")
        reads: list[dict[str, Any]] = []
        if "reads" in opts.parts:
            with heartbeat("bench: read speed", progress):
                reads = measure_reads(made["stores"], made["flac_paths"], reads=200 if opts.quick else 2000)
        specs = _specs(opts, made["stores"], made["flac_paths"], device) if "throughput" in opts.parts else []
        with heartbeat("bench: throughput", progress):
            throughput = measure_throughput(
                specs, isolate=not opts.quick, progress=(lambda m: _note(True, m)) if progress else None
            )
        tokenize = [{"codec": r["codec"], "x_real_time_per_core": r["tokenize_x_real_time_per_core"],
                     "x_real_time_per_cpu_second": r["tokenize_x_real_time_per_cpu_second"]}
                    for r in storage if "tokenize_x_real_time_per_core" in r]  # fmt: skip
        result = {
            "corpus": {"sources": list(srcs), "utterances": len(items), "seconds": made["seconds"]},
            "machine": {
                "device": device,
                "threads": opts.threads,
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },  # fmt: skip
            "options": asdict(opts),
            "storage": storage,
            "tokenize": tokenize,
            "reads": reads,
            "throughput": throughput,
            "ratios": speed_ratios(throughput),
            "loader": loader_needs(reads, throughput),
        }
        if opts.out:
            import json

            atomic_write(root / "bench.json", (json.dumps(result, indent=1, default=str) + "\n").encode())
            plot(result, root / "bench.png")
        return result


def speed_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and codec store: how much faster the codec model trains than each baseline (same batch)."""
    out = []
    for c in (r for r in rows if r["model"] == "codec"):
        for b in (r for r in rows if r["model"] != "codec" and r["size"] == c["size"]):
            out.append({
                "size": c["size"], "codec": c["codec"], "baseline": b["model"],
                "speedup": c["audio_seconds_per_second"] / b["audio_seconds_per_second"],
                "compute_speedup": c["compute_frames_per_second"] / b["compute_frames_per_second"],
            })  # fmt: skip
    return out


def format_report(r: dict[str, Any]) -> str:
    """The human-readable table of `run_bench`'s result."""
    c = r["corpus"]
    lines = [f"corpus: {c['utterances']} utterances, {c['seconds'] / 3600:.2f} h; {r['machine']['device']}, "
             f"{r['machine']['threads']} thread(s)", "", "storage (all files):"]  # fmt: skip
    for s in r["storage"]:
        line = f"  {s['codec']:<16} {s['kbps']:8.2f} kbps  {s['ratio_to_flac']:6.2f}x smaller than FLAC"
        if "entropy_kbps" in s:
            line += (
                f"; codes {s['codes_kbps']:.2f} kbps ({s['codes_ratio_to_flac']:.1f}x), order-0 entropy "
                f"{s['entropy_kbps']:.2f} kbps: store +{100 * s['over_entropy_all_files']:.1f}%, "
                f"codes +{100 * s['over_entropy_codes']:.1f}% ({s['coding']})"
            )
        lines.append(line)
    lines += ["", "tokenization (x real time per core: read, encode, store; wall clock, and per CPU second):"]
    lines += [f"  {t['codec']:<16} {t['x_real_time_per_core']:8.1f}x  {t['x_real_time_per_cpu_second']:8.1f}x"
              for t in r["tokenize"]]  # fmt: skip
    lines += ["", "random-crop reads (one core):"]
    lines += [f"  {x['source']:<16} {x['frames_per_second']:12,.0f} frames/s  {x['ratio_to_flac']:6.1f}x FLAC"
              for x in r["reads"]]  # fmt: skip
    lines += ["", "training step, data included (same batch in audio seconds):"] if r["throughput"] else []
    for t in r["throughput"]:
        name = f"{t['model']}{'/' + t['codec'] if t['codec'] else ''} {t['size']}"
        lines.append(
            f"  {name:<26} {t['audio_seconds_per_second']:8.2f} audio s/s  {t['steps_per_second']:7.3f} steps/s  "
            f"front end {100 * t['frontend_share']:5.1f}%  data {t['data_ms']:7.1f} ms  peak {t['peak_memory_mb']:,.0f} MB"
        )
    lines += [""] + [f"  codec/{x['codec']} vs {x['baseline']} at {x['size']}: {x['speedup']:.2f}x faster "
                     f"(compute alone {x['compute_speedup']:.2f}x)" for x in r["ratios"]]  # fmt: skip
    for name, need in r["loader"].items():
        lines.append(f"  loader {name}: {need['ratio']:.0f}x what {need['model']} consumes "
                     f"({need['loader_processes_needed']} process(es)); a GPU ({need['gpu_consumption']}, "
                     f"{need['gpu_consumes_frames_per_second']:,.0f} frames/s) needs "
                     f"{need['gpu_loader_processes']} loader process(es)")  # fmt: skip
    return "\n".join(lines)


__all__ = ["BenchOptions", "format_report", "run_bench", "speed_ratios"]
