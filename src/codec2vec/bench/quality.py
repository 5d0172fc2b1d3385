"""`codec2vec bench --quality`: quality reached per unit of compute (issue 11; Codec2Vec's claim of competitive
quality at 2.3x less training time than a continuous-input model, checked on the user's machine).

The codec model and the two continuous-input baselines (`model.frontend: codec | waveform | mel`) are pre-trained
at the SAME size (`tiny`) for the SAME wall-clock budget (`train.max_seconds`: the loop stops at the budget, not
at a step count, and checkpoints there) on the SAME corpus, one after the other with the same threads, then each
is probed with the demo's probes (probe/): PR (linear CTC head, PER), SID (mean-pool + linear, accuracy) and
label-free ABX within and across speakers, every figure with its 95% bootstrap interval.

Fair by construction: the same recipe (configs/demo.yaml: masking, optimizer, warm-up, then a constant learning
rate after a 10-step warm-up), the same batch in audio seconds (`data.batch_frames` on the shared 50 Hz grid), the same crops of the same
utterances, and the same kind of targets: `clusters` (HuBERT round 1: k-means of the codec's quantized latent for
the codec model, of MFCCs for the audio models, as HuBERT; the same number of clusters) plus DinoSR's `online`.
Each pipeline reads its input as it would in practice: codes from the token store, audio from the files the
store was made from (decoding included in the budget).

Corpus: the demo's first stages (`demo.prepare_corpus`: eSpeak NG speech with noise and reverberation, task
folders with large test splits, Lyra tokens of every non-test clip) in OUT, or `corpus=DIR` of an existing
`codec2vec demo --out DIR`. Stages leave markers in OUT/stages (a rerun skips finished ones; an interrupted
pre-training restarts from scratch so that its budget stays one uninterrupted stretch).

`run_quality(options) -> dict` returns `{"quality": rows, "models": ..., ...}`: one row per (model, task, metric)
with `model`, `frontend`, `budget_s`, `steps`, `audio_seconds_seen`, `wall_seconds`, `task`, `metric`, `value`,
`ci`. With the defaults the whole command took 22.5 minutes on a shared 2-core CPU (load 7-8): corpus 1.5 min,
pre-training 3 x 4 min (+ set-up, final dev pass and checkpoint), probes 7 min; within 30 minutes by construction.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from codec2vec.errors import ConfigError
from codec2vec.files import atomic_write

MODELS = ("codec", "waveform", "mel")
PROBE_FIELDS = (
    "probe_epochs",
    "utterance_epochs",
    "probe_patience",
    "utterance_patience",
)  # a change redoes the probes only
ROUND1 = {"codec": "codec", "waveform": "mfcc", "mel": "mfcc"}  # k-means source of each front end's labels


@dataclass
class QualityOptions:
    """What `bench --quality` trains and probes, and how long it may take."""

    out: str = ""  # folder for corpus, runs, features, quality.json and quality.png ("" = a temporary folder)
    corpus: str = ""  # an existing `codec2vec demo --out` folder: its tasks and store (no synth, no tokenize)
    budget_minutes: float = 4.0  # pre-training wall clock PER MODEL
    frontends: list[str] = field(default_factory=lambda: list(MODELS))
    size: str = "tiny"
    hours: float = 0.6  # synthetic corpus (demo stages), when no corpus is given; 45% of the clips are test clips
    speakers: int = 16
    seed: int = 0
    batch_seconds: float = 20.0  # audio seconds per step (padded), the same for every front end
    crop_seconds: float = 5.0
    warmup_steps: int = 10  # short: the waveform model makes only tens of steps in a few minutes on a CPU
    threads: int = 1  # torch threads for every pre-training (and the probes)
    clusters: int = 100  # k-means classes of the round-1 labels (all models)
    probe_epochs: int = 30  # most epochs of the PR (CTC) head; early stopping on dev (the demo's probe settings)
    utterance_epochs: int = 150  # most epochs of the SID head
    probe_patience: int = 10  # CTC sits ~10 epochs on blanks before it learns phones
    utterance_patience: int = 150  # SID: every epoch runs (the best-on-dev head is kept); the baselines' mean-pooled
    # features leave the head on a plateau for tens of epochs (patience 10 stopped it at chance, 0.06; all 150: 0.19-0.28)
    workers: int = 2  # processes for synth and tokenize

    @classmethod
    def quick(cls, **kw: Any) -> QualityOptions:
        """The tests' setting (`bench --quality --quick`): a 3-minute corpus, 6 s per model, short probes."""
        small = dict(hours=0.05, speakers=4, budget_minutes=0.1, batch_seconds=10.0, crop_seconds=2.0, warmup_steps=2,
                     clusters=20, probe_epochs=3, utterance_epochs=5, probe_patience=2, utterance_patience=5)  # fmt: skip
        return cls(**(small | kw))


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"bench --quality: {msg}", file=sys.stderr, flush=True)


class _Stages:
    """Stage markers in OUT/stages/quality-<name>.json holding the settings the result depends on."""

    def __init__(self, root: Path, progress: bool) -> None:
        self.root, self.progress = root, progress
        self.seconds: dict[str, float] = {}

    def run(self, name: str, key: dict[str, Any], fn: Callable[[], Any]) -> Any:
        path = self.root / "stages" / f"quality-{name}.json"
        done = json.loads(path.read_text()) if path.is_file() else None
        if done is not None and done.get("key") == key:
            _say(self.progress, f"{name}: done before ({done['seconds']:.0f} s), skipped")
        else:
            _say(self.progress, f"{name} ...")
            t0 = time.perf_counter()
            result = fn()
            done = {"key": key, "seconds": round(time.perf_counter() - t0, 2), "result": result}
            atomic_write(path, json.dumps(done, indent=1, default=str) + "\n")
            _say(self.progress, f"{name}: done in {done['seconds']:.0f} s")
        self.seconds[name] = float(done["seconds"])
        return done["result"]


def _corpus(root: Path, opts: QualityOptions, progress: bool) -> tuple[Path, dict[str, Any]]:
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


def _labels(store: Path, opts: QualityOptions, frontend: str) -> str:
    """The round-1 label set of `frontend` in the store (made once: codec latent or MFCC k-means)."""
    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore

    source = ROUND1[frontend]
    name = f"quality-{source}{opts.clusters}-s{opts.seed}"
    if name not in TokenStore.open(store).label_names():
        run_kmeans(str(store), KMeansOptions(source=source, clusters=opts.clusters, name=name, seed=opts.seed))
    return name


def _config(frontend: str, *, store: Path, run_dir: Path, labels: str, opts: QualityOptions) -> Any:
    """configs/demo.yaml with the front end, the budget and the shared batch (only the front end differs)."""
    from codec2vec.config import load_config
    from codec2vec.demo.settings import DEFAULT_CONFIG

    if not DEFAULT_CONFIG.is_file():
        raise ConfigError(f"{DEFAULT_CONFIG}: the demo's pre-training config is missing")
    overrides = [
        f"model.preset={opts.size}", f"model.frontend={frontend}", "targets=clusters,online",
        f"targets.clusters_labels={labels}", f"data.store={store}", f"run.dir={run_dir}",
        f"data.batch_frames={round(opts.batch_seconds * 50)}", f"data.crop_frames={round(opts.crop_seconds * 50)}",
        "data.workers=0", "data.dev_batches=4", "train.steps=1000000", "train.final_lr_ratio=1.0",
        f"train.warmup_steps={opts.warmup_steps}", f"train.max_seconds={opts.budget_minutes * 60}",
        "train.eval_every=0", "train.ckpt_every=0", "train.keep_checkpoints=1", f"train.threads={opts.threads}",
        f"train.seed={opts.seed}", "run.tensorboard=false", "run.progress=auto",
    ]  # fmt: skip
    return load_config(DEFAULT_CONFIG, overrides)


def _pretrain(frontend: str, *, store: Path, root: Path, opts: QualityOptions) -> dict[str, Any]:
    """One model for the budget, from scratch; what it did (steps, audio seen, seconds, last losses)."""
    from codec2vec.train import pretrain

    labels = _labels(store, opts, frontend)
    run_dir = root / "runs" / frontend
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run restarts: its budget is one stretch
    cfg = _config(frontend, store=store, run_dir=run_dir, labels=labels, opts=opts)
    t0 = time.perf_counter()
    s = pretrain(cfg)
    wall = time.perf_counter() - t0
    return {
        "model": frontend, "frontend": frontend, "size": opts.size, "labels": labels, "run_dir": str(run_dir),
        "budget_s": opts.budget_minutes * 60, "steps": int(s["steps_run"]), "train_seconds": s["train_seconds"],
        "wall_seconds": wall, "audio_seconds_seen": s["frames_seen"] / 50.0,
        "steps_per_second": s["steps_run"] / max(s["train_seconds"], 1e-9),
        "stopped_at_budget": bool(s["stopped_at_max_seconds"]), "encoder_params": s["encoder_params"],
        "first_loss": s["first_loss"], "last": s["last"], "dev": s["dev"],
    }  # fmt: skip


def _probe(model: dict[str, Any], *, data: Path, root: Path, opts: QualityOptions) -> list[dict[str, Any]]:
    """PR, SID and ABX of one pre-trained model -> result rows (value and 95% interval each)."""
    from codec2vec.probe import abx, feature_source, run_probe

    source = feature_source("pretrained", model["run_dir"])
    out = []
    for task, epochs, patience in (("pr", opts.probe_epochs, opts.probe_patience),
                                   ("sid", opts.utterance_epochs, opts.utterance_patience)):  # fmt: skip
        r = run_probe(task, data=data / task, source=source, max_epochs=epochs, patience=patience, seed=opts.seed,
                      cache_dir=root / "features")  # fmt: skip
        out.append({"task": task, "metric": r["metric"], "value": r["value"], "ci": r["ci"], "n_test": r["n_test"],
                    "epochs": r["epochs"]})  # fmt: skip
    a = abx(data / "pr", source=source, cache_dir=root / "features", seed=opts.seed)
    for side in ("across", "within"):
        out.append({"task": "abx", "metric": f"abx_error_{side}", "value": a[side], "ci": a[f"ci_{side}"],
                    "layer": a["layer"], "n_test": a["n_test"]})  # fmt: skip
    keep = ("model", "frontend", "budget_s", "steps", "audio_seconds_seen", "wall_seconds", "train_seconds")
    return [{k: model[k] for k in keep} | row for row in out]


def _check(opts: QualityOptions) -> None:
    bad = [f for f in opts.frontends if f not in MODELS]
    if bad or not opts.frontends:
        raise ConfigError(f"--frontends {','.join(opts.frontends)}: choose among {', '.join(MODELS)}")
    if opts.budget_minutes <= 0:
        raise ConfigError(f"--budget-minutes {opts.budget_minutes}: must be > 0")


def run_quality(opts: QualityOptions, *, progress: bool = False) -> dict[str, Any]:
    """Corpus -> k-means -> one budgeted pre-training per front end -> probes; returns (and writes) the result."""
    import torch

    _check(opts)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opts.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        stages = _Stages(root, progress)
        t0 = time.perf_counter()
        base, corpus = _corpus(root, opts, progress)
        stages.seconds["corpus"] = time.perf_counter() - t0  # synth, tasks, tokenize (demo stages) or a given corpus
        store, data = base / "store", base / "tasks"
        key = {k: v for k, v in asdict(opts).items() if k not in ("out", "frontends", "workers")}
        train_key = {k: v for k, v in key.items() if k not in PROBE_FIELDS}
        models = []
        for f in opts.frontends:  # one after the other: each has the machine to itself
            models.append(
                stages.run(f"pretrain-{f}", train_key, partial(_pretrain, f, store=store, root=root, opts=opts))
            )
        rows = []
        for m in models:
            rows += stages.run(f"probe-{m['model']}", key, partial(_probe, m, data=data, root=root, opts=opts))
        result = {
            "quality": rows,
            "models": models,
            "corpus": corpus,
            "budget_s": opts.budget_minutes * 60,
            "fairness": (
                f"same size ({opts.size}), same wall-clock budget per model, same corpus and crops, same batch "
                f"({opts.batch_seconds:g} s of audio), same recipe and threads ({opts.threads}); targets clusters "
                f"(k-means, {opts.clusters} classes: codec latent for codec, MFCC for waveform/mel, as HuBERT "
                "round 1) + online for all"
            ),
            "machine": {"cpus": os.cpu_count(), "threads": opts.threads, "torch": torch.__version__},
            "options": asdict(opts),
            "stage_seconds": stages.seconds,
            "total_seconds": time.perf_counter() - t_start,
        }
        if opts.out:
            atomic_write(root / "quality.json", json.dumps(result, indent=1, default=str) + "\n")
            plot_quality(result, root / "quality.png")
        return result


def _fmt(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    lo, hi = row["ci"]
    return f"{row['value']:.3f} [{lo:.3f}, {hi:.3f}]"


METRICS = (
    ("per", "PER"),
    ("accuracy", "SID acc"),
    ("abx_error_across", "ABX across"),
    ("abx_error_within", "ABX within"),
)


def format_quality(r: dict[str, Any]) -> str:
    """The human-readable table of `run_quality`'s result."""
    lines = [f"equal-compute quality: {r['budget_s']:.0f} s of pre-training per model; {r['fairness']}", ""]
    head = f"{'model':<9} {'steps':>6} {'steps/s':>8} {'audio h':>8} {'wall s':>7}"
    lines.append(head + "".join(f"  {name:<22}" for _, name in METRICS))
    for m in r["models"]:
        line = (f"{m['model']:<9} {m['steps']:>6} {m['steps_per_second']:>8.3f} "
                f"{m['audio_seconds_seen'] / 3600:>8.3f} {m['wall_seconds']:>7.0f}")  # fmt: skip
        for metric, _ in METRICS:
            row = next((x for x in r["quality"] if x["model"] == m["model"] and x["metric"] == metric), None)
            line += f"  {_fmt(row):<22}"
        lines.append(line)
    lines += ["", "PER and ABX error: lower is better; SID accuracy: higher; [95% bootstrap interval over test items]"]
    lines.append(f"total {r['total_seconds']:.0f} s; stages: " + ", ".join(f"{k} {v:.0f} s"
                                                                           for k, v in r["stage_seconds"].items()))  # fmt: skip
    return "\n".join(lines)


def plot_quality(result: dict[str, Any], path: Path) -> None:
    """One panel per metric: each model's value with its 95% interval, labelled with steps and audio seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec2vec.files import atomic_file

    models = result["models"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.4 * len(METRICS), 3.6))
    names = [f"{m['model']}\n{m['steps']} steps\n{m['audio_seconds_seen'] / 3600:.2f} h" for m in models]
    for ax, (metric, title) in zip(axes, METRICS):
        rows = [next((x for x in result["quality"] if x["model"] == m["model"] and x["metric"] == metric), None)
                for m in models]  # fmt: skip
        vals = [x["value"] if x else 0.0 for x in rows]
        err = [
            [x["value"] - x["ci"][0] if x else 0.0 for x in rows],
            [x["ci"][1] - x["value"] if x else 0.0 for x in rows],
        ]
        ax.bar(range(len(models)), vals, yerr=err, capsize=4, color=[f"C{MODELS.index(m['model'])}" for m in models])
        ax.set_xticks(range(len(models)), names, fontsize=7)
        ax.set_title(f"{title} ({'higher' if metric == 'accuracy' else 'lower'} is better)", fontsize=9)
    fig.suptitle(f"equal compute: {result['budget_s']:.0f} s of pre-training per model (95% intervals)", fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


__all__ = ["MODELS", "QualityOptions", "format_quality", "plot_quality", "run_quality"]
