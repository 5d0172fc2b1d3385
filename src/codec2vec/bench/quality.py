"""`codec2vec bench --quality`: quality reached for equal compute, in a controlled comparison (Codec2Vec's claim
of competitive quality at less training cost than a continuous-input model, checked on the user's machine).

Models: the codec model and the two continuous-input baselines, each at the SAME size (`tiny`) on the SAME
corpus, crops and batch (audio seconds per step on the shared 50 Hz grid), with the same recipe
(configs/demo.yaml: masking, optimizer, warm-up, then a constant learning rate):
- `codec` (`model.frontend=codec`), `waveform` (HuBERT's CNN) and `mel` (MelHuBERT: `model.frontend=melhubert`,
  40-dim Kaldi fbank stacked to 80 at 50 Hz, corpus mean/variance normalisation).
- Own recipe: round-1 targets as each model's paper has them (`clusters`: k-means of the codec's quantized
  latent, of MFCCs for waveform as HuBERT, of log-mel fbank for mel as MelHuBERT; the same number of
  classes) plus DinoSR's `online`; quantizer dropout as the config has it (codec only).
- Same-targets control (`control`): every model trained on identical targets, `clusters` on k-means of MFCCs
  of the source audio on the shared grid, quantizer dropout off, so that the input alone differs.

Compute: every run gets the same budget, `--budget steps` (default: equal optimizer steps, hence equal data)
or `--budget cpu` (equal process CPU seconds of the training loop), never wall clock; the runs are interleaved
round-robin in chunks of steps, each chunk resuming its run (bench/schedule.py). Each (model, recipe) is
pre-trained `seeds` times (seeds `seed`, `seed + 1`, ...; a seed fixes the initial weights, data order, crops
and masks), and every checkpoint probed with the demo's probes (probe/): PR (linear CTC head, PER), SID
(mean-pool + linear, accuracy) and label-free ABX within and across speakers. Results per seed, mean and sd
over seeds, and paired deltas (probe/paired.py: bootstrap over shared test items and seeds; ABX over
speakers) for every pair of models under each recipe; an interval that covers 0 reads "no difference".

Corpus: the demo's first stages (`demo.prepare_corpus`) in OUT, or `corpus=DIR` of an existing
`codec2vec demo --out` folder. Stages leave markers in OUT/stages (a rerun skips finished ones; an interrupted
pre-training resumes from its runs' checkpoints).

`run_quality(options) -> dict`: `{"quality": rows (one per model, recipe, seed, task, metric: value, ci,
n_test, steps, cpu_seconds, ...), "summary": mean/sd rows, "paired": delta rows, "runs", "budget", ...}`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from codec2vec.bench.compare import METRICS, format_quality, paired_rows, plot_quality, summary_rows, verdict_lines
from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.common.options import option

MODELS = ("codec", "waveform", "mel")
FRONTEND = {"codec": "codec", "waveform": "waveform", "mel": "melhubert"}  # model name -> model.frontend
OWN_TARGETS = {"codec": "codec", "waveform": "mfcc", "mel": "fbank"}  # k-means source of each model's round 1
RECIPES = ("own", "same-targets")
PROBE_FIELDS = ("probe_epochs", "utterance_epochs", "probe_patience", "utterance_patience")  # redo the probes only


@dataclass
class QualityOptions:
    """What `bench --quality` trains and probes, and how much compute each run gets."""

    # folder for corpus, runs, features, quality.json and quality.png ("" = a temporary folder)
    out: str = option("")
    # an existing `codec2vec demo --out` folder: its tasks and store (no synth, no tokenize)
    corpus: str = option("", help="an existing `codec2vec demo --out` folder (no synth/tokenize)")
    # steps: equal optimizer steps per run | cpu: equal process CPU seconds per run
    budget: str = option("steps", choices=("steps", "cpu"), help="equal optimizer steps or CPU time")
    # sized so that the default run (3 models x 2 recipes x 3 seeds = 18 runs) takes about 30-35 minutes on 2
    # cores: measured per run (one thread, CPU seconds, 0.2 h corpus, 5 s batches) the waveform model's step costs
    # 1.7 s against 0.07 s for codec and mel, its probes 49 s against 5-7 s; k-means of 3 sources ~80 s; each
    # chunk's set-up (resume, checkpoint, dev pass) a few seconds
    budget_steps: int = option(100, help="--budget steps: optimizer steps per run")
    budget_minutes: float = option(1.0, help="--budget cpu: CPU minutes of the training loop per run")
    chunk_steps: int = option(25, cli=False)  # interleaving: steps per turn of a run
    seeds: int = option(3, help="pre-trainings per model and recipe")
    # also the same-targets control (identical MFCC targets, quantizer dropout off)
    control: bool = option(True, help="skip the same-targets control runs")
    frontends: list[str] = option(factory=lambda: list(MODELS))
    # The recipe below is fixed (not flags): the corpus, batch and probe settings every model shares.
    size: str = option("tiny", cli=False)
    # synthetic corpus (demo stages), when no corpus is given; 45% of the clips are test clips
    hours: float = option(0.2, cli=False)
    speakers: int = option(16, cli=False)
    seed: int = option(0, cli=False)
    batch_seconds: float = option(5.0, cli=False)  # audio seconds per step (padded), the same for every front end
    crop_seconds: float = option(2.5, cli=False)
    warmup_steps: int = option(10, cli=False)
    threads: int = option(1)  # torch threads for every pre-training (and the probes)
    clusters: int = option(100, cli=False)  # k-means classes of the round-1 labels (all models)
    # most epochs of the PR (CTC) head; early stopping on dev (the demo's probe settings)
    probe_epochs: int = option(30, cli=False)
    utterance_epochs: int = option(150, cli=False)  # most epochs of the SID head
    probe_patience: int = option(10, cli=False)  # CTC sits ~10 epochs on blanks before it learns phones
    # SID: every epoch runs (the best-on-dev head is kept); the baselines' mean-pooled features leave the head on
    # a plateau for tens of epochs (patience 10 stopped it at chance, 0.06; all 150: 0.19-0.28)
    utterance_patience: int = option(150, cli=False)
    workers: int = option(2, cli=False)  # processes for synth and tokenize

    @classmethod
    def quick(cls, **kw: Any) -> QualityOptions:
        """The tests' setting (`bench --quality --quick`): a 3-minute corpus, 2 steps per run in 2 chunks, 2 seeds,
        short probes."""
        small = dict(hours=0.05, speakers=4, budget_steps=2, budget_minutes=0.05, chunk_steps=1, seeds=2,
                     batch_seconds=4.0, crop_seconds=2.0, warmup_steps=1, clusters=20, probe_epochs=3,
                     utterance_epochs=5, probe_patience=2, utterance_patience=5)  # fmt: skip
        return cls(**(small | kw))

    @property
    def amount(self) -> float:
        """The budget of one run in its unit: steps, or CPU seconds."""
        return float(self.budget_steps) if self.budget == "steps" else self.budget_minutes * 60.0


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"bench --quality: {msg}", file=sys.stderr, flush=True)


class Stages:
    """Stage markers in OUT/stages/quality-<name>.json holding the settings the result depends on."""

    def __init__(self, root: Path, progress: bool, prefix: str = "quality") -> None:
        self.root, self.progress, self.prefix = root, progress, prefix
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process and its children per stage run here

    def _say(self, msg: str) -> None:
        if self.progress:
            print(f"bench --{self.prefix}: {msg}", file=sys.stderr, flush=True)

    def run(self, name: str, key: dict[str, Any], fn: Callable[[], Any]) -> Any:
        path = self.root / "stages" / f"{self.prefix}-{name}.json"
        done = json.loads(path.read_text()) if path.is_file() else None
        if done is not None and done.get("key") == key:
            self._say(f"{name}: done before ({done['seconds']:.0f} s), skipped")
        else:
            self._say(f"{name} ...")
            t0, c0 = time.perf_counter(), _cpu()
            result = fn()
            done = {"key": key, "seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(_cpu() - c0, 2),
                    "result": result}  # fmt: skip
            atomic_write(path, json.dumps(done, indent=1, default=str) + "\n")
            self._say(f"{name}: done in {done['seconds']:.0f} s")
        self.seconds[name] = self.seconds.get(name, 0.0) + float(done["seconds"])
        self.cpu[name] = float(done.get("cpu_seconds", 0.0))
        return done["result"]


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its finished children (synth, tokenize workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_corpus(root: Path, opts: QualityOptions, progress: bool) -> tuple[Path, dict[str, Any]]:
    """The folder holding `tasks/` and `store/`: OUT after the demo's first stages, or an existing demo folder."""
    from codec2vec.demo import DemoSettings, prepare_corpus

    if opts.corpus:
        src = Path(opts.corpus)
        need = [src / "tasks" / "pr" / "test.jsonl", src / "tasks" / "sid" / "test.jsonl", src / "store" / "meta.json"]
        missing = [str(p) for p in need if not p.is_file()]
        if missing:
            raise ConfigError(f"--corpus {src}: not a demo folder (missing {', '.join(missing)})")
        marker = src / "stages" / "synth.json"
        synth = json.loads(marker.read_text())["result"] if marker.is_file() else {}
        return src, {"from": str(src), "hours": synth.get("hours"), "clips": synth.get("clips")}
    settings = DemoSettings(hours=opts.hours, speakers=opts.speakers, seed=opts.seed, workers=opts.workers)
    res = prepare_corpus(root, settings, progress=progress)
    return root, {"hours": res["synth"]["hours"], "clips": res["synth"]["clips"], "splits": res["tasks"]["splits"]}


def _labels(store: Path, opts: QualityOptions, source: str) -> str:
    """The round-1 label set of k-means `source` (codec | mfcc | fbank) in the store, made once."""
    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore

    name = f"quality-{source}{opts.clusters}-s{opts.seed}"
    if name not in TokenStore.open(store).label_names():
        run_kmeans(str(store), KMeansOptions(source=source, clusters=opts.clusters, name=name, seed=opts.seed))
    return name


@dataclass(frozen=True)
class RunSpec:
    model: str  # codec | waveform | mel
    recipe: str  # own | same-targets
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-{self.recipe}-s{self.seed}"


def run_config(spec: RunSpec, *, store: Path, run_dir: Path, labels: str, opts: QualityOptions, steps: int,
            final: bool, extra: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """configs/demo.yaml with the front end, targets, seed and the shared batch; `steps`: where this chunk ends;
    `extra`: more `a.b=c` overrides, applied last (bench --frontier: the audio manifest, a recipe change)."""
    from codec2vec.demo.settings import DEFAULT_CONFIG
    from codec2vec.pretrain.config import load_config

    if not DEFAULT_CONFIG.is_file():
        raise ConfigError(f"{DEFAULT_CONFIG}: the demo's pre-training config is missing")
    targets = "clusters,online" if spec.recipe == "own" else "clusters"
    overrides = [
        f"model.preset={opts.size}", f"model.frontend={FRONTEND[spec.model]}", f"targets={targets}",
        f"targets.clusters.labels={labels}", f"data.store={store}", f"run.dir={run_dir}",
        f"data.batch_frames={round(opts.batch_seconds * 50)}", f"data.crop_frames={round(opts.crop_seconds * 50)}",
        "data.workers=0", f"data.dev_batches={4 if final else 1}", f"train.steps={steps}",
        "train.final_lr_ratio=1.0", f"train.warmup_steps={opts.warmup_steps}", "train.max_seconds=0",
        "train.eval_every=0", "train.ckpt_every=0", "train.keep_checkpoints=1", f"train.threads={opts.threads}",
        f"train.seed={spec.seed}", "run.tensorboard=false", "run.progress=off",
    ]  # fmt: skip
    if spec.recipe == "same-targets":
        overrides.append("model.quantizer_dropout=0.0")
    if FRONTEND[spec.model] != "codec":  # the recipe's codec-only knob: audio front ends sum no embeddings
        overrides.append("model.embed_norm=layernorm")
    return load_config(DEFAULT_CONFIG, overrides + list(extra))


def _chunk_config(make: Callable[..., Any], steps: int, final: bool) -> Any:
    return make(steps=steps, final=final)


def _specs(opts: QualityOptions) -> list[RunSpec]:
    recipes = RECIPES if opts.control else RECIPES[:1]
    return [RunSpec(m, r, opts.seed + i) for r in recipes for i in range(opts.seeds) for m in opts.frontends]


def runs_folder(root: Path, key: dict[str, Any]) -> Path:
    """`root/runs` for runs made with settings `key`: emptied first when it holds runs of other settings (their
    checkpoints cannot be resumed into this comparison)."""
    runs = root / "runs"
    key_path = runs / "settings.json"
    if key_path.is_file() and json.loads(key_path.read_text()) != key:
        shutil.rmtree(runs)
    runs.mkdir(parents=True, exist_ok=True)
    atomic_write(key_path, json.dumps(key, indent=1, default=str) + "\n")
    return runs


def _pretrain_all(specs: list[RunSpec], *, store: Path, root: Path, opts: QualityOptions, key: dict[str, Any],
                  progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    """Every run for the same budget, interleaved (bench/schedule.py); runs of other settings are removed."""
    from codec2vec.bench.schedule import Job, run_interleaved

    runs = runs_folder(root, key)
    jobs = []
    for spec in specs:
        labels = _labels(store, opts, OWN_TARGETS[spec.model] if spec.recipe == "own" else "mfcc")
        run_dir = runs / spec.name
        make: Callable[..., Any] = partial(run_config, spec, store=store, run_dir=run_dir, labels=labels, opts=opts)
        jobs.append(Job(spec.name, run_dir, partial(_chunk_config, make)))
    done = run_interleaved(jobs, kind=opts.budget, amount=opts.amount, chunk=opts.chunk_steps,
                           say=lambda m: _say(progress, m))  # fmt: skip
    out = []
    for spec, s in zip(specs, done):
        out.append({
            "run": spec.name, "model": spec.model, "recipe": spec.recipe, "seed": spec.seed,
            "frontend": FRONTEND[spec.model], "size": opts.size, "run_dir": s["run_dir"],
            "kmeans_source": OWN_TARGETS[spec.model] if spec.recipe == "own" else "mfcc",
            "budget": opts.budget, "budget_amount": opts.amount, "steps": int(s["steps"]),
            "cpu_seconds": s["cpu_seconds"], "wall_seconds": s.get("wall_seconds", 0.0), "chunks": s["chunks"],
            "audio_seconds_seen": s.get("frames_seen", 0.0) / 50.0, "encoder_params": s.get("encoder_params"),
            "first_loss": s.get("first_loss"), "last": s.get("last"), "dev": s.get("dev"),
        })  # fmt: skip
    return out


def probe_run(run: dict[str, Any], *, data: Path, root: Path, opts: QualityOptions) -> list[dict[str, Any]]:
    """PR, SID and ABX of one pre-trained run -> result rows (value, 95% interval, per-item stats)."""
    from codec2vec.probe import abx, feature_source, run_probe
    from codec2vec.probe.command import speaker_items
    from codec2vec.probe.paired import abx_warnings

    source = feature_source("pretrained", run["run_dir"])
    out = []
    for task, epochs, patience in (("pr", opts.probe_epochs, opts.probe_patience),
                                   ("sid", opts.utterance_epochs, opts.utterance_patience)):  # fmt: skip
        r = run_probe(task, data=data / task, source=source, max_epochs=epochs, patience=patience, seed=opts.seed,
                      cache_dir=root / "features")  # fmt: skip
        out.append({"task": task, "metric": r["metric"], "value": r["value"], "ci": r["ci"], "n_test": r["n_test"],
                    "epochs": r["epochs"], "warnings": r["warnings"], "items": r["test_items"]})  # fmt: skip
    a = abx(data / "pr", source=source, cache_dir=root / "features", seed=opts.seed)
    for side in ("across", "within"):
        out.append({"task": "abx", "metric": f"abx_error_{side}", "value": a[side], "ci": a[f"ci_{side}"],
                    "layer": a["layer"], "n_test": a["n_test"], "items": speaker_items(a, side),
                    "warnings": abx_warnings(a)})  # fmt: skip
    keep = ("run", "model", "recipe", "seed", "frontend", "budget", "budget_amount", "steps", "cpu_seconds",
            "wall_seconds", "audio_seconds_seen")  # fmt: skip
    return [{k: run[k] for k in keep} | row for row in out]


def check_options(opts: QualityOptions) -> None:
    bad = [f for f in opts.frontends if f not in MODELS]
    if bad or not opts.frontends:
        raise ConfigError(f"--frontends {','.join(opts.frontends)}: choose among {', '.join(MODELS)}")
    if opts.budget not in ("steps", "cpu"):
        raise ConfigError(f"--budget {opts.budget}: choose steps or cpu")
    if opts.budget == "cpu" and opts.budget_minutes <= 0:
        raise ConfigError(f"--budget-minutes {opts.budget_minutes}: must be > 0")
    if opts.budget == "steps" and opts.budget_steps <= 0:
        raise ConfigError(f"--budget-steps {opts.budget_steps}: must be > 0")
    if opts.seeds < 1:
        raise ConfigError(f"--seeds {opts.seeds}: must be >= 1")


def run_quality(opts: QualityOptions, *, progress: bool = False) -> dict[str, Any]:
    """Corpus -> k-means -> interleaved, budgeted pre-training of every (model, recipe, seed) -> probes ->
    per-seed rows, mean/sd and paired deltas; returns (and writes) the result."""
    import torch

    check_options(opts)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        stages = Stages(root, progress)
        t0, c0 = time.perf_counter(), _cpu()
        base, corpus = bench_corpus(root, opts, progress)
        stages.seconds["corpus"] = time.perf_counter() - t0  # synth, tasks, tokenize (demo stages) or a given corpus
        stages.cpu["corpus"] = _cpu() - c0
        store, data = base / "store", base / "tasks"
        key = {k: v for k, v in asdict(opts).items() if k not in ("out", "workers")}
        train_key = {k: v for k, v in key.items() if k not in PROBE_FIELDS}
        specs = _specs(opts)
        runs = stages.run("pretrain", train_key, partial(_pretrain_all, specs, store=store, root=root, opts=opts,
                                                         key=train_key, progress=progress))  # fmt: skip
        rows: list[dict[str, Any]] = []
        for r in runs:
            rows += stages.run(f"probe-{r['run']}", key, partial(probe_run, r, data=data, root=root, opts=opts))
        items = {(x["run"], x["metric"]): x.pop("items") for x in rows}
        warnings = sorted({w for x in rows for w in x.get("warnings", [])})
        result = {
            "quality": rows,
            "summary": summary_rows(rows),
            "paired": (paired := paired_rows(rows, items, seed=opts.seed)),
            "verdicts": verdict_lines(paired),
            "runs": runs,
            "corpus": corpus,
            "budget": {
                "kind": opts.budget,
                "amount": opts.amount,
                "unit": "steps" if opts.budget == "steps" else "CPU seconds",
                "chunk_steps": opts.chunk_steps,
                "interleaved": True,
            },  # fmt: skip
            "seeds": opts.seeds,
            "warnings": warnings,
            "fairness": (
                f"same size ({opts.size}), same budget per run ({opts.amount:g} "
                f"{'optimizer steps' if opts.budget == 'steps' else 'CPU seconds'}, runs interleaved), same corpus, "
                f"crops and batch ({opts.batch_seconds:g} s of audio), same recipe and threads ({opts.threads}); "
                f"own recipe: k-means ({opts.clusters} classes) of codec latent / MFCC / fbank + online; "
                "same-targets control: MFCC k-means only, quantizer dropout off"
            ),
            "machine": {"cpus": os.cpu_count(), "threads": opts.threads, "torch": torch.__version__},
            "options": asdict(opts),
            "stage_seconds": stages.seconds,
            "stage_cpu_seconds": stages.cpu,  # what a quiet machine's wall time follows (threads add up)
            "total_seconds": time.perf_counter() - t_start,
        }
        if opts.out:
            atomic_write(root / "quality.json", json.dumps(result, indent=1, default=str) + "\n")
            plot_quality(result, root / "quality.png")
        return result


__all__ = ["METRICS", "MODELS", "QualityOptions", "format_quality", "plot_quality", "run_quality"]
