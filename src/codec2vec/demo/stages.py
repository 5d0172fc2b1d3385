"""The demo's stages and its entry point `run_demo` (see the package docstring for the stages)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_dir, atomic_write
from codec2vec.corpora.manifest import write_task
from codec2vec.corpora.synth import SynthOptions, synth_corpus
from codec2vec.demo.report import probe_rows, write_report
from codec2vec.demo.settings import REDO_ON_CHANGE, REFERENCES, TASKS, DemoSettings, config_path, stage_key
from codec2vec.kmeans import KMeansOptions, run_kmeans
from codec2vec.pretrain.checkpoint import list_checkpoints, read_meta, save_checkpoint
from codec2vec.pretrain.config import config_to_dict, load_config
from codec2vec.pretrain.loop import build_from_config, pretrain
from codec2vec.probe import abx, feature_source, run_probe
from codec2vec.store import TokenStore
from codec2vec.tokenize import TokenizeOptions, tokenize

# --- stage bookkeeping ------------------------------------------------------------------------------------------


class _Run:
    """The demo folder, its settings, and the results of finished stages (read back from their markers)."""

    def __init__(self, out: Path, settings: DemoSettings, *, progress: bool) -> None:
        self.out = out
        self.settings = settings
        self.progress = progress
        self.results: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}

    def marker(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def say(self, line: str) -> None:
        print(f"demo: {line}", file=sys.stderr, flush=True)

    def stage(self, name: str, n: int, total: int, fn: Callable[[], Any]) -> Any:
        """Run `fn` unless its marker says it finished with these settings; remember its result."""
        key = stage_key(self.settings, name)
        path = self.marker(name)
        done = json.loads(path.read_text()) if path.is_file() else None
        if done is not None and done.get("settings") != key:
            changed = sorted(k for k in key if done.get("settings", {}).get(k) != key[k])
            if not name.startswith(REDO_ON_CHANGE):
                raise ConfigError(
                    f"{self.out}: made with other demo settings ({', '.join(changed)}); use another --out or remove it"
                )
            self.say(f"[{n}/{total}] {name}: settings changed ({', '.join(changed)}), redone")
            done = None
        if done is not None:
            self.say(f"[{n}/{total}] {name}: done before ({done['seconds']:.0f} s), skipped")
        else:
            self.say(f"[{n}/{total}] {name} ...")
            t0 = time.perf_counter()
            result = fn()
            done = {"settings": key, "seconds": round(time.perf_counter() - t0, 2), "result": result}
            atomic_write(path, json.dumps(done, indent=1, default=str) + "\n")
            self.say(f"[{n}/{total}] {name}: done in {done['seconds']:.0f} s")
        self.results[name] = done["result"]
        self.seconds[name] = float(done["seconds"])
        return done["result"]


# --- the stages -------------------------------------------------------------------------------------------------


def _synth(run: _Run) -> dict[str, Any]:

    s = run.settings
    opts = SynthOptions(
        hours=s.hours, speakers=s.speakers, seed=s.seed, snr=s.snr, reverb=True, degraded=s.degraded, workers=s.workers
    )
    with atomic_dir(run.out / "corpus", replace=True) as tmp:
        summary = synth_corpus(tmp, opts, progress=run.progress)
    return {"clips": summary["clips"], "hours": summary["hours"], "options": summary["options"]}


def _deal(keys: list[str], shares: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Splits stratified by key: each key's items (shuffled) are dealt from one running cycle of 20 slots
    holding the splits in their shares, so every key with enough items is in every split."""
    slots = [s for s, share in shares.items() for _ in range(round(20 * share))]
    slots += ["train"] * (20 - len(slots))
    slots = [slots[i] for i in rng.permutation(len(slots))]
    out = [""] * len(keys)
    r = int(rng.integers(len(slots)))
    for key in sorted(set(keys)):
        for i in rng.permutation([i for i, k in enumerate(keys) if k == key]).tolist():
            out[i] = slots[r % len(slots)]
            r += 1
    return out


def _read_rows(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def _tasks(run: _Run) -> dict[str, Any]:
    """PR, SID (sentence clips, one split stratified by speaker) and KS (stratified by keyword) re-split so
    that the test sets are large; paths are rewritten relative to the new folders."""

    s = run.settings
    shares = {"test": s.test_share, "dev": s.dev_share}
    corpus, tasks = run.out / "corpus", run.out / "tasks"
    counts: dict[str, Any] = {}
    splits: dict[str, str] = {}  # clip id -> split, shared by PR and SID
    for t, task in enumerate(TASKS):
        src = corpus / task
        rows = _read_rows(src)
        meta = json.loads((src / "meta.json").read_text())
        missing = [r["id"] for r in rows if r["id"] not in splits]
        key = [r["label"] if task == "ks" else r["speaker"] for r in rows if r["id"] in missing]
        splits.update(zip(missing, _deal(key, shares, np.random.default_rng([s.seed, 11, t]))))
        for r in rows:
            r["split"] = splits[r["id"]]
            r["path"] = os.path.relpath((src / r["path"]).resolve(), (tasks / task).resolve())
        keep = {k: v for k, v in meta.items() if k not in ("task", "splits", "hours", "labels", "frame_rate")}
        info = write_task(
            tasks / task,
            task,
            rows,
            labels=meta["labels"],
            meta={**keep, "resplit": shares},
            frame_rate=meta["frame_rate"],
        )
        counts[task] = info["splits"]
    return {"splits": counts, "test_ids": sorted(i for i, sp in splits.items() if sp == "test")}


def _tokenize(run: _Run) -> dict[str, Any]:
    """Lyra tokens of every clip outside the probes' test splits (the pre-training data)."""

    test = set(run.results["tasks"]["test_ids"])
    corpus = run.out / "corpus"
    lines = [line for line in (corpus / "all.jsonl").read_text().splitlines() if json.loads(line)["id"] not in test]
    atomic_write(corpus / "pretrain.jsonl", "".join(x + "\n" for x in lines))
    summary = tokenize(
        [str(corpus / "pretrain.jsonl")],
        run.out / "store",
        TokenizeOptions(codec="lyra", workers=run.settings.workers),
        progress=run.progress,
    )
    keep = ("inputs", "stored", "skipped_already_stored", "rejected", "seconds_encoded", "x_real_time")
    return {k: summary[k] for k in keep} | {"info": summary["store"]}


def _config(run: _Run) -> Any:

    s = run.settings
    path = config_path(s)
    if not path.is_file():
        raise ConfigError(f"{path}: demo config not found (give one with --config)")
    overrides = [
        f"data.store={run.out / 'store'}",
        f"run.dir={run.out / 'run'}",
        f"train.steps={s.steps}",
        f"train.ckpt_every={max(1, s.steps // max(1, s.checkpoints))}",
        f"train.eval_every={max(1, s.steps // max(1, s.checkpoints))}",
        "train.keep_checkpoints=0",
        f"train.warmup_steps={min(40, max(1, s.steps // 10))}",
        f"train.seed={s.seed}",
    ]
    return load_config(path, overrides)


def _save_initial(cfg: Any, path: Path) -> None:
    """The weights pre-training starts from (same seed, same construction as `train.pretrain`), saved as a
    checkpoint so that step 0 can be probed like any other step."""
    import torch

    store = TokenStore.open(cfg.data.store)
    torch.manual_seed(cfg.train.seed)
    model = build_from_config(cfg, store)
    n = sum(p.numel() for p in model.encoder.parameters())
    meta = {"step": 0, "config": config_to_dict(cfg), "codec": store.codec.to_dict(), "label_classes": {}}
    save_checkpoint(path, weights=model.state_dict(), state={"step": 0}, meta=meta | {"encoder_params": n})


def _pretrain(run: _Run) -> dict[str, Any]:

    cfg = _config(run)
    cfg.run.progress = "auto" if run.progress else "off"
    init = run.out / "run" / "init"
    if (
        "clusters" in cfg.targets.names
        and cfg.targets.clusters.labels not in TokenStore.open(cfg.data.store).label_names()
    ):
        run_kmeans(cfg.data.store, KMeansOptions(source="codec", clusters=100, name=cfg.targets.clusters.labels))
    if not (init / "meta.json").is_file():
        _save_initial(cfg, init)
    summary = pretrain(cfg)
    ckpts = [{"step": 0, "path": str(init.relative_to(run.out))}]  # paths relative to DIR: it may move
    ckpts += [
        {"step": int(read_meta(p)["step"]), "path": str(p.relative_to(run.out))}
        for p in list_checkpoints(run.out / "run")
    ]
    keep = ("step", "first_loss", "last", "dev", "encoder_params")
    return {"checkpoints": ckpts} | {k: summary.get(k) for k in keep}


def _last_ckpt(run: _Run) -> str:
    return str(run.out / run.results["pretrain"]["checkpoints"][-1]["path"])


def _probe(run: _Run, task: str, source: Any, *, per_layer: bool = False) -> dict[str, Any]:

    r = run_probe(
        task,
        data=run.out / "tasks" / task,
        source=source,
        seed=run.settings.seed,
        per_layer=per_layer,
        cache_dir=run.out / "features",
        max_epochs=run.settings.probe_epochs if task == "pr" else run.settings.utterance_epochs,
        patience=run.settings.probe_patience,
        progress=run.progress,
    )
    return {k: v for k, v in r.items() if k != "history"}  # per-epoch history stays out of the results


def _probe_task(run: _Run, task: str) -> dict[str, Any]:
    """The task's probe on the pre-trained model (also per layer) and on the references (as
    `probe.probe_with_references` does, with the per-layer fits only where they are plotted)."""

    ckpt, seed = _last_ckpt(run), run.settings.seed
    per_layer = run.settings.per_layer and task != "pr"  # a CTC head per layer is slow; ABX gives phones per layer
    out = {"pretrained": _probe(run, task, feature_source("pretrained", ckpt), per_layer=per_layer)}
    for kind in REFERENCES:
        out[kind] = _probe(run, task, feature_source(kind, ckpt, seed=seed))
    return out


def _steps(run: _Run) -> list[dict[str, Any]]:
    """PER at every checkpoint; the last one is the PR probe's own figure (not trained twice)."""

    ckpts = run.results["pretrain"]["checkpoints"]
    rows = []
    for c in ckpts[:-1]:
        r = _probe(run, "pr", feature_source("pretrained", run.out / c["path"]))
        rows.append({"step": c["step"], "metric": r["metric"], "value": r["value"], "ci": r["ci"]})
    pr = run.results["probe-pr"]["pretrained"]
    rows.append({"step": ckpts[-1]["step"], "metric": pr["metric"], "value": pr["value"], "ci": pr["ci"]})
    return rows


def _abx(run: _Run) -> dict[str, Any]:
    """ABX error (ZeroSpeech 2021: triphone items; layer chosen on dev) of the three models on the PR folder's test items."""

    out = {}
    for kind in ("pretrained", *REFERENCES):
        source = feature_source(kind, _last_ckpt(run), seed=run.settings.seed)
        out[kind] = dict(
            abx(run.out / "tasks" / "pr", source=source, cache_dir=run.out / "features", seed=run.settings.seed)
        )
    return out


def _storage(run: _Run) -> dict[str, Any]:
    """`codec2vec info --json` of the pre-training store (sizes for the report's storage bars)."""

    info = dict(TokenStore.open(run.out / "store").info())
    return info | {"pcm16_bytes": int(round(info["seconds"] * info["codec"]["sample_rate"] * 2))}


# --- results and the entry point ---------------------------------------------------------------------------------


def collect(run: _Run) -> dict[str, Any]:
    """results.json: settings, corpus, probes (task, model, metric, value, ci), PER against steps, storage, stage timings."""

    res = run.results
    return {
        "settings": asdict(run.settings),
        "ci_level": 0.95,
        "corpus": res["synth"] | {"splits": res["tasks"]["splits"]},
        "pretraining": {k: v for k, v in res["pretrain"].items() if k != "checkpoints"}
        | {"checkpoint_steps": [c["step"] for c in res["pretrain"]["checkpoints"]]},
        "probes": probe_rows(res, TASKS),
        "per_vs_steps": res["steps"],
        "storage": res["storage"],
        "stage_seconds": dict(run.seconds),
    }


def prepare_corpus(out: str | Path, settings: DemoSettings, *, progress: bool = True) -> dict[str, Any]:
    """The demo's first three stages alone, resumable with the same markers: `out/corpus`, the task folders
    `out/tasks/{pr,ks,sid}` and the Lyra store `out/store` of every non-test clip (`bench --quality` uses it)."""

    run = _Run(Path(out), settings, progress=progress)
    claim_folder(run.out)
    stages = (("synth", _synth), ("tasks", _tasks), ("tokenize", _tokenize))
    for n, (name, fn) in enumerate(stages, 1):
        run.stage(name, n, len(stages), lambda fn=fn: fn(run))  # type: ignore[misc]
    return dict(run.results)


MARKER = ".codec2vec-demo"  # written first into a demo folder: only a folder holding it is ever written into


def claim_folder(out: Path) -> None:
    """Make `out` a demo folder, or check that it is one, before anything is written: a missing or empty folder
    gets the marker; a folder with the marker (or the stage markers of a demo made before the marker existed)
    is resumed; anything else (a user's files) is refused, untouched."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if (out / MARKER).is_file():
        return
    legacy = (out / "stages" / "synth.json").is_file() and (out / "corpus").is_dir()  # a demo of an older version
    if out.is_dir() and any(out.iterdir()) and not legacy:
        raise ConfigError(
            f"--out {out}: folder is not empty and is not a codec2vec demo folder (no {MARKER}); "
            "use a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / MARKER, "codec2vec demo folder: `codec2vec demo --out` resumes and rewrites what is here\n")


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the demo into `out`; returns the results written to `out/results.json`."""

    run = _Run(Path(out), settings, progress=progress)
    claim_folder(run.out)
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("synth", lambda: _synth(run)),
        ("tasks", lambda: _tasks(run)),
        ("tokenize", lambda: _tokenize(run)),
        ("pretrain", lambda: _pretrain(run)),
        *((f"probe-{t}", (lambda t=t: _probe_task(run, t))) for t in TASKS),  # type: ignore[misc]
        ("steps", lambda: _steps(run)),
        ("abx", lambda: _abx(run)),
        ("storage", lambda: _storage(run)),
    ]
    total = len(stages) + 1
    for n, (name, fn) in enumerate(stages, 1):
        run.stage(name, n, total, fn)
    t0 = time.perf_counter()
    results = collect(run)
    atomic_write(run.out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    results = json.loads((run.out / "results.json").read_text())  # the report shows exactly what the file holds
    write_report(run.out, results, metrics=run.out / "run" / "metrics.jsonl")
    run.say(f"[{total}/{total}] report: {run.out / 'report.html'} ({time.perf_counter() - t0:.0f} s)")
    return results
