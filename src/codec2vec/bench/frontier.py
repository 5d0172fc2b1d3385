"""`codec2vec bench --frontier`: the storage-quality frontier. For the storage a user can afford per hour of
speech and equal compute, which input gives the best representation: codec tokens at several bitrates, or
audio kept as FLAC or Ogg/Opus and read by the mel or waveform front end?

One corpus (the demo's synthetic one, or `--corpus` a demo folder) and its task folders serve every point: the
same utterances (every store holds exactly the token store's ids), the same probe splits, the same model size,
batch, recipe (configs/demo.yaml) and budget as `bench --quality` (bench/quality.py: equal steps or CPU seconds,
interleaved, seeds `seed`, `seed + 1`, ...). Points (`Point`):
- `codec-N`: Lyra tokens at N of 46 levels (the first N levels of the 46-level store, bench/audio_stores.py),
  round 1 on k-means of the N-level codec latent, plus `online`;
- `mel-flac`, `mel-opus<kbps>`: the `melhubert` front end reading FLAC or Ogg/Opus files (`data.audio=`,
  decoded at load time), round 1 on k-means of log-mel fbank of the same files;
- `waveform-flac`, `waveform-opus<kbps>` (the lowest Opus point): HuBERT's CNN, round 1 on MFCCs of the files.
The probes (PR, SID, ABX) read the task folders' own test audio for every point (the codec model through its
codec at its level count): storage is what pre-training keeps, test audio is the same for all.

Recipe rows (`RECIPES`): changes to today's codec recipe (`codec-46`), each a named set of config overrides,
a round-1 k-means source or a store, run on the same corpus and seeds and paired against `codec-46`. A
variant whose runs equal a point's (`levels-16` is `codec-16`) reuses them.

CPU seconds per run: `cpu_seconds` is the training loop's process CPU time (bench/schedule.py), loading
included (`data.workers=0`: a thread of the training process reads ahead, overlapped with the step, so the
loop's wait, `data_wait_seconds` from `metrics.jsonl`'s `data_wait_s`, understates the loading's cost).
`data_seconds` is the loading's CPU time: the audio seconds the run read times its store's read cost, measured
once per store by reading utterances whole with the reader training uses (`audio_stores.read_cost`: token
store reads, or file decoding); `train_cpu_seconds` is the rest.

`run_frontier(options) -> dict` (also `frontier.json`, `frontier.png` in `out`): `points`, `recipes` (rows:
mean, sd, 95% interval over items and seeds, kbps, CPU seconds), `paired` (deltas with 95% intervals),
`verdict` (bench/frontier_report.py), `records`, `runs`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from codec2vec.bench.quality import (
    FRONTEND,
    PROBE_FIELDS,
    QualityOptions,
    RunSpec,
    Stages,
    bench_corpus,
    probe_run,
    run_config,
    runs_folder,
)
from codec2vec.bench.quality import check_options as check_quality
from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.common.options import option

CODEC_LEVELS = (4, 8, 16, 30, 46)
OPUS_KBPS = (6.0, 12.0, 24.0)
OWN_SOURCE = {"codec": "codec", "mel": "fbank", "waveform": "mfcc"}  # round-1 k-means source per front end
BASELINE = "codec-46"  # today's recipe: the recipe rows are paired against it
# name -> what changes against today's recipe: `overrides` (config), `kmeans` (round-1 source), `storage`
RECIPES: dict[str, dict[str, Any]] = {
    "decoded-mfcc": {"kmeans": "decoded-mfcc"},  # MFCCs of the audio decoded from the tokens (tokens only)
    "embed-none": {"overrides": ("model.embed_norm=none",)},  # the raw sum (today: over sqrt(levels kept))
    "embed-layernorm": {"overrides": ("model.embed_norm=layernorm",)},  # a LayerNorm after the sum (the former demo)
    "qd-off": {"overrides": ("model.quantizer_dropout=0.0",)},
    "qd-decay": {"overrides": ("model.quantizer_dropout_schedule=decay",)},
    "levels-16": {"storage": "lyra-16"},
}


@dataclass
class FrontierOptions(QualityOptions):
    """`bench --quality`'s corpus, budget, seeds and probes, plus the frontier's points and recipe rows."""

    # Default size (bench --quality's 0.2 h corpus, 100 steps, 3 seeds, so the two compare), from one seed of
    # codec-46, mel-flac, mel-opus-6, waveform-opus-6 and qd-off at this size (process CPU seconds, one thread):
    # 100 steps cost 6-7 s for codec and mel (Opus decoding included), 147 s for waveform; probes (PR, SID, ABX)
    # 4-7 s for codec/mel, 47 s for waveform; 4 label sets and 10 chunk set-ups ~140 s together (k-means ~25 s,
    # a set-up ~4 s). Default: 42 codec/mel runs (9 points + 5 new recipe rows, levels-16 reuses codec-16, x 3
    # seeds) x (6.5 + 2 x 4 + 6 s) ~ 14 min; 6 waveform runs x (147 + 8 + 47 s) ~ 20 min; 12 label sets ~ 5 min;
    # corpus and records ~ 2 min: ~41 CPU minutes, one process, so ~41 min of wall time on 2 quiet cores.
    chunk_steps: int = option(50, cli=False)  # interleaving: steps per turn of a run
    levels: list[int] = option(factory=lambda: list(CODEC_LEVELS), help="Lyra level counts of the codec points")
    opus_kbps: list[float] = option(factory=lambda: list(OPUS_KBPS), help="target kbps of the Opus points")
    waveform: list[str] = option(factory=lambda: ["flac", "opus"], help="the waveform front end's inputs: flac "
                                 "and/or opus (the lowest Opus point)")  # fmt: skip
    recipes: list[str] = option(factory=lambda: list(RECIPES), help="codec recipe rows, comma-separated, or none")
    opus_sample: int = option(24, cli=False)  # clips on which each Opus level is chosen

    @classmethod
    def quick(cls, **kw: Any) -> FrontierOptions:
        """The tests' setting (`bench --frontier --quick`): `bench --quality --quick`'s corpus, budget and probes,
        2 level counts, one Opus point, no waveform runs (its probes alone took 11 s per run; it reads audio
        through the same loader as mel, and `bench --quality --quick` trains it), the cheap recipe rows."""
        small = dict(levels=[16, 46], opus_kbps=[6.0], recipes=["qd-off", "levels-16"], opus_sample=4,
                     waveform=[])  # fmt: skip
        return super().quick(**(small | kw))  # type: ignore[return-value]


@dataclass(frozen=True)
class Point:
    """One input: a front end reading one store, round 1 from one k-means source, extra config overrides."""

    name: str
    model: str  # codec | mel | waveform
    storage: str  # lyra-<N> | flac | opus-<kbps>
    source: str  # round-1 k-means source
    overrides: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, tuple[str, ...]]:
        return (self.model, self.storage, self.source, self.overrides)


def opus_name(kbps: float) -> str:
    return f"opus-{kbps:g}"


def frontier_points(opts: FrontierOptions) -> list[Point]:
    """The frontier's points, codec first, in rising kbps per kind."""
    pts = [Point(f"codec-{n}", "codec", f"lyra-{n}", "codec") for n in sorted(opts.levels)]
    audio = ["flac"] + [opus_name(k) for k in sorted(opts.opus_kbps)]
    pts += [Point(f"mel-{s}", "mel", s, "fbank") for s in audio]
    wave = (["flac"] if "flac" in opts.waveform else []) + (audio[1:2] if "opus" in opts.waveform else [])
    pts += [Point(f"waveform-{s}", "waveform", s, "mfcc") for s in wave]
    return pts


def recipe_points(opts: FrontierOptions) -> list[Point]:
    """The recipe rows as points on the codec model (today's recipe with one change each)."""
    out = []
    for name in opts.recipes:
        v = RECIPES[name]
        out.append(Point(name, "codec", v.get("storage", "lyra-46"), v.get("kmeans", "codec"),
                         tuple(v.get("overrides", ()))))  # fmt: skip
    return out


def check_options(opts: FrontierOptions) -> None:
    bad = [r for r in opts.recipes if r not in RECIPES]
    if bad:
        raise ConfigError(f"--recipes {','.join(bad)}: choose among {', '.join(RECIPES)} (or none)")
    if not opts.levels or any(not 1 <= n <= 46 for n in opts.levels) or 46 not in opts.levels:
        raise ConfigError(f"levels {opts.levels}: Lyra has 1..46 levels, and 46 (today's recipe) must be among them")
    if any(k <= 0 for k in opts.opus_kbps) or not opts.opus_kbps:
        raise ConfigError(f"opus kbps {opts.opus_kbps}: at least one, each > 0")
    if any(w not in ("flac", "opus") for w in opts.waveform):
        raise ConfigError(f"waveform inputs {opts.waveform}: choose among flac, opus")
    check_quality(opts)  # budget, seeds, front ends: as bench --quality


def _stores(base: Path, root: Path, opts: FrontierOptions, levels: list[int]) -> dict[str, dict[str, Any]]:
    """Every store a point reads, measured as made: token records at `levels`, FLAC and Opus copies."""
    from codec2vec.bench.audio_stores import opus_level, read_corpus, read_cost, token_stores, write_audio_store
    from codec2vec.pretrain.loaders import audio_paths
    from codec2vec.store import TokenStore

    out = token_stores(base, root / "stores", levels)
    store = TokenStore.open(base)
    wavs = read_corpus(audio_paths(store))
    shutil.rmtree(root / "stores" / "audio", ignore_errors=True)
    out["flac"] = {"kind": "audio"} | write_audio_store(wavs, root / "stores" / "audio" / "flac", "flac")
    sample = [wavs[u] for u in sorted(wavs)[: opts.opus_sample]]
    for kbps in opts.opus_kbps:
        pick = opus_level(sample, kbps)
        name = opus_name(kbps)
        info = write_audio_store(wavs, root / "stores" / "audio" / name, "opus", pick["level"])
        out[name] = {"kind": "audio", "target_kbps": kbps, "sample_kbps": pick["kbps"]} | info
    ids = sorted(store.ids())
    for name, s in out.items():  # every store holds exactly the token store's utterances
        if _ids_of(s) != ids:
            raise ConfigError(f"{name}: its utterances differ from the corpus store {base}")
        s["utterances"] = len(ids)
        s["read"] = read_cost(s, base)
    return out


def _ids_of(s: dict[str, Any]) -> list[str]:
    """The sorted utterance ids a store (token store folder, or audio manifest) holds."""
    if s["kind"] == "tokens":
        from codec2vec.store import TokenStore

        return sorted(TokenStore.open(s["path"]).ids())
    return sorted(json.loads(line)["id"] for line in Path(s["manifest"]).read_text().splitlines() if line.strip())


def _labels(point: Point, records: dict[str, Any], base: Path, opts: FrontierOptions) -> tuple[str, str]:
    """(store the run reads, round-1 label set in it), the label set made once by k-means of `point.source`:
    of the point's token store (codec), or of the point's audio files (mel, waveform: labels go into the base
    store, which gives the audio front ends their ids and frame counts)."""
    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore

    s = records[point.storage]
    store = Path(s["path"]) if s["kind"] == "tokens" else base
    audio = s.get("manifest", "")
    name = f"frontier-{point.source}{opts.clusters}-{point.storage}-s{opts.seed}"
    if name not in TokenStore.open(store).label_names():
        run_kmeans(str(store), KMeansOptions(source=point.source, clusters=opts.clusters, name=name, seed=opts.seed,
                                             audio=audio))  # fmt: skip
    return str(store), name


def data_seconds(run_dir: Path) -> float:
    """Seconds the training loop waited for batches over the whole run: per train row of `metrics.jsonl`, its
    `data_wait_s` (per step, over the window since the row before) times the window's steps."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0.0
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows = sorted((r for r in rows if r.get("split") != "dev" and "data_wait_s" in r), key=lambda r: r["step"])
    total, prev = 0.0, 0
    for r in rows:
        total += float(r["data_wait_s"]) * max(0, int(r["step"]) - prev)
        prev = max(prev, int(r["step"]))
    return total


def _pretrain(points: list[Point], *, records: dict[str, Any], base: Path, root: Path, opts: FrontierOptions,
              key: dict[str, Any], progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    """One run per (distinct point, seed), all for the same budget, interleaved (bench/schedule.py)."""
    from codec2vec.bench.schedule import Job, run_interleaved

    runs = runs_folder(root, key)
    jobs, meta = [], []
    for p in points:
        store, labels = _labels(p, records, base, opts)
        audio = (f"data.audio={records[p.storage]['manifest']}",) if records[p.storage]["kind"] == "audio" else ()
        for i in range(opts.seeds):
            spec = RunSpec(p.model, "own", opts.seed + i)
            run_dir = runs / f"{p.name}-s{spec.seed}"
            make: Callable[..., Any] = partial(run_config, spec, store=Path(store), run_dir=run_dir, labels=labels,
                                               opts=opts, extra=audio + p.overrides)  # fmt: skip
            jobs.append(Job(run_dir.name, run_dir, partial(_steps_config, make)))
            meta.append((p, spec))
    done = run_interleaved(jobs, kind=opts.budget, amount=opts.amount, chunk=opts.chunk_steps,
                           say=lambda m: _say(progress, m))  # fmt: skip
    out = []
    for (p, spec), s in zip(meta, done):
        wait = data_seconds(Path(s["run_dir"]))
        seen = s.get("frames_seen", 0.0) / 50.0
        loading = seen * float(records[p.storage]["read"]["cpu_per_audio_second"])
        out.append({
            "run": f"{p.name}-s{spec.seed}", "point": p.name, "model": p.model, "recipe": p.name, "seed": spec.seed,
            "storage": p.storage, "kmeans_source": p.source, "overrides": list(p.overrides),
            "frontend": FRONTEND[p.model], "size": opts.size, "run_dir": s["run_dir"], "budget": opts.budget,
            "budget_amount": opts.amount, "steps": int(s["steps"]), "cpu_seconds": s["cpu_seconds"],
            "data_seconds": round(loading, 3), "data_wait_seconds": round(wait, 3),
            "train_cpu_seconds": round(max(0.0, s["cpu_seconds"] - loading), 3),
            "wall_seconds": s.get("wall_seconds", 0.0), "audio_seconds_seen": seen,
        })  # fmt: skip
    return out


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"bench --frontier: {msg}", file=sys.stderr, flush=True)


def _steps_config(make: Callable[..., Any], steps: int, final: bool) -> Any:
    return make(steps=steps, final=final)


def _distinct(points: list[Point]) -> tuple[list[Point], dict[str, str]]:
    """Points with distinct runs, and each name -> the name whose runs it uses (`levels-16` -> `codec-16`)."""
    first: dict[Any, Point] = {}
    alias = {}
    for p in points:
        first.setdefault(p.key, p)
        alias[p.name] = first[p.key].name
    return list(first.values()), alias


def run_frontier(opts: FrontierOptions, *, progress: bool = False) -> dict[str, Any]:
    """Corpus -> records -> k-means -> interleaved, budgeted pre-training of every point and recipe row ->
    probes -> rows, paired deltas and the verdict; returns (and writes) the result."""
    from codec2vec.bench.frontier_report import assemble, plot_frontier

    check_options(opts)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        stages = Stages(root, progress, prefix="frontier")
        base, corpus = bench_corpus(root, opts, progress)
        points, recipes = frontier_points(opts), recipe_points(opts)
        levels = sorted({int(p.storage.split("-")[1]) for p in points + recipes if p.storage.startswith("lyra-")})
        store_key = {"corpus": corpus, "levels": levels, "opus": sorted(opts.opus_kbps), "sample": opts.opus_sample}
        records = stages.run("stores", store_key, partial(_stores, base / "store", root, opts, levels))
        distinct, alias = _distinct(points + recipes)
        key = {k: v for k, v in asdict(opts).items() if k not in ("out", "workers")} | {"stores": store_key}
        train_key = {k: v for k, v in key.items() if k not in PROBE_FIELDS}
        runs = stages.run("pretrain", train_key, partial(_pretrain, distinct, records=records, base=base / "store",
                                                         root=root, opts=opts, key=train_key, progress=progress))  # fmt: skip
        rows: list[dict[str, Any]] = []
        for r in runs:
            rows += stages.run(f"probe-{r['run']}", key,
                               partial(probe_run, r, data=base / "tasks", root=root, opts=opts))  # fmt: skip
        result = assemble(rows, runs, points=points, recipes=recipes, alias=alias, records=records, opts=opts)
        result |= {"corpus": corpus, "options": asdict(opts), "stage_seconds": stages.seconds,
                   "stage_cpu_seconds": stages.cpu, "total_seconds": time.perf_counter() - t_start}  # fmt: skip
        if opts.out:
            atomic_write(root / "frontier.json", json.dumps(result, indent=1, default=str) + "\n")
            plot_frontier(result, root / "frontier.png")
            _refresh_demo_report(opts, root)
        return result


def _refresh_demo_report(opts: FrontierOptions, root: Path) -> None:
    """`--corpus DEMO --out DEMO/frontier`: the demo's report gets the frontier's section (re-rendered from its
    results.json, which is left as it is)."""
    from codec2vec.demo.report import write_report

    demo = Path(opts.corpus) if opts.corpus else None
    if demo is None or root.resolve() != (demo / "frontier").resolve() or not (demo / "results.json").is_file():
        return
    results = json.loads((demo / "results.json").read_text())
    write_report(demo, results, metrics=demo / "run" / "metrics.jsonl")


__all__ = ["CODEC_LEVELS", "OPUS_KBPS", "RECIPES", "FrontierOptions", "Point", "data_seconds", "run_frontier"]
