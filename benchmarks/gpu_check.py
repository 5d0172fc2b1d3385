"""GPU check of the pre-training loop: `lyra_base` and `dac16k_base_online` on CUDA in bf16 for a few dozen steps on a
synthetic token store, stopped at a checkpoint and resumed; prints one JSON object per line. A benchmark, not a
test (tests/bench/test_gpu_check.py runs it tiny on the CPU so it cannot rot).

    python benchmarks/gpu_check.py                          # CUDA, bf16; about 2-4 minutes on one H200
    python benchmarks/gpu_check.py --device cpu --steps 2 --tiny --out /tmp/gc

Per config and phase (`start`: steps 1..S/2 then a checkpoint; `resume`: S/2+1..S from it) a row with
`frames_per_s` (real frames per wall second, warm-up rows left out), `base_frames_per_s` (real frames per second
of the loop without its data wait: what `GPU_BASE_FRAMES_PER_S` in pretrain/loaders.py estimates),
`data_wait_share`, `peak_gpu_mem_gib`, `syncs_per_step` (host syncs CUDA reports inside `train_step` with
`torch.cuda.set_sync_debug_mode("warn")`: one per micro-batch expected), `syncs_per_log_row` (those of the log
rows, every `log_every` steps) and the resume's check (`resumed_at`, `ok`). A last row `summary` holds the
measured base figure next to the constant.

The stores hold random codes on each codec's real layout (Lyra v2: K=46, V=16; DAC 16 kHz: K=12, V=1024; 50
frames/s), packed (`coding="packed"`: no numba needed); no codec weights or audio are read. It needs torch, numpy,
safetensors and pyyaml with this repository (`PYTHONPATH=src` or installed); an error is one JSON line
(`error`) and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
CODECS = {"lyra": (46, 16), "dac": (12, 1024)}  # K, V
CONFIGS = {"lyra_base": "lyra", "dac16k_base_online": "dac"}
TINY = ["model.num_layers=2", "model.dim=64", "model.ffn_dim=128", "model.num_heads=2", "model.conv_pos_kernel=8",
        "model.conv_pos_groups=2", "targets.online.top_k=2", "targets.online.codewords=16", "data.crop_frames=100",
        "data.batch_frames=400", "data.min_frames=8"]  # fmt: skip


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def make_store(path: Path, codec: str, utterances: int, seed: int = 0) -> Path:
    """A packed token store of `utterances` random utterances (300..1200 frames) on `codec`'s layout."""
    from codec2vec.codecs.base import CodecInfo, config_hash
    from codec2vec.store import TokenStore

    if (path / "meta.json").is_file():
        return path
    k, v = CODECS[codec]
    g = torch.Generator().manual_seed(seed)
    config = {"synthetic": True}
    info = CodecInfo(codec, 16000, 50.0, k, v, config, config_hash(config))
    store = TokenStore.create(path, info, torch.randn(k, v, 64, generator=g), coding="packed")
    with store.writer() as w:
        for i in range(utterances):
            t = int(torch.randint(300, 1200, (), generator=g))
            w.add(f"utt{i:05d}", torch.randint(0, v, (k, t), generator=g), seconds=t / 50.0)
    return path


class SyncCount:
    """Host syncs CUDA reports (`set_sync_debug_mode("warn")` warnings) while active: `total`, `step` inside
    `train_step` and `log` inside `log_step` and `_out_of_time` (which read the device at log rows only); start-up,
    evaluation and checkpoints are in `total` only. None on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __enter__(self) -> SyncCount:
        from codec2vec.pretrain import loop as train

        self.total: int | None = None
        self.counts: dict[str, int] | None = None
        if not self.cuda:
            return self
        self._rec = warnings.catch_warnings(record=True)
        self.caught = self._rec.__enter__()
        warnings.simplefilter("always")
        self.counts = {"step": 0, "log": 0}
        self._saved = {n: getattr(train, n) for n in ("train_step", "log_step", "_out_of_time")}
        for name, fn in self._saved.items():
            setattr(train, name, self._counted(fn, "step" if name == "train_step" else "log"))
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def _counted(self, fn: Any, key: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            n = self._syncs()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.counts is not None:
                    self.counts[key] += self._syncs() - n

        return wrapper

    def _syncs(self) -> int:
        return sum("synchroniz" in str(w.message) for w in self.caught)

    def __exit__(self, *exc: Any) -> None:
        if not self.cuda:
            return
        from codec2vec.pretrain import loop as train

        torch.cuda.set_sync_debug_mode("default")
        for name, fn in self._saved.items():
            setattr(train, name, fn)
        self.total = self._syncs()
        self._rec.__exit__(*exc)


def window_figures(run_dir: Path, first_step: int, skip_rows: int) -> dict[str, float]:
    """Real frames per wall second, per second without the data wait, data-wait share and seconds per step over
    the train rows of `metrics.jsonl` after `first_step`, its first `skip_rows` (warm-up) left out."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("split") != "dev" and r["step"] > first_step]
    spans = [(r, r["step"] - (rows[i - 1]["step"] if i else first_step)) for i, r in enumerate(rows)]  # steps per row
    spans = spans[skip_rows:] if len(spans) > skip_rows else spans[-1:]
    wall = sum(r["step_s"] * n for r, n in spans)
    wait = sum(r["data_wait_s"] * n for r, n in spans)
    frames = sum(r["window_frames_per_s"] * r["step_s"] * n for r, n in spans)
    return {
        "frames_per_s": frames / max(wall, 1e-9),
        "base_frames_per_s": frames / max(wall - wait, 1e-9),
        "data_wait_share": wait / max(wall, 1e-9),
        "step_s": wall / max(1, sum(n for _, n in spans)),
        "loss": spans[-1][0]["loss"] if spans else float("nan"),
    }


def check(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train `name` for steps 1..S/2 (a checkpoint), resume to S; one row per phase; returns the resume row."""
    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.loop import pretrain

    codec = CONFIGS[name]
    store = make_store(args.out / f"store_{codec}", codec, args.utterances)
    run_dir = args.out / f"run_{name}"
    half = max(1, args.steps // 2)
    base = [f"data.store={store}", f"data.codec={codec}", f"run.dir={run_dir}", "run.progress=off",
            "run.tensorboard=false", f"train.device={args.device}", f"train.log_every={args.log_every}",
            "train.eval_every=0", "data.dev_batches=1", "train.keep_checkpoints=1", "train.warmup_steps=10",
            f"train.max_seconds={args.phase_seconds}", *(["train.precision=fp32"] if args.device == "cpu" else []),
            *(TINY if args.tiny else []), *args.set]  # fmt: skip
    row: dict[str, Any] = {}
    stopped_at = 0
    for phase, steps in (("start", half), ("resume", args.steps)):
        cfg = load_config(
            ROOT / "configs" / f"{name}.yaml", [*base, f"train.steps={steps}", f"train.ckpt_every={half}"]
        )
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with SyncCount(args.device == "cuda") as syncs:
            summary = pretrain(cfg)
        seconds = time.perf_counter() - t0
        first = 0 if phase == "start" else stopped_at
        ran = int(summary["steps_run"])
        row = {
            "config": name, "phase": phase, "device": args.device, "steps_run": ran, "step": int(summary["step"]),
            "batch_frames": cfg.data.batch_frames, "accum_steps": cfg.train.accum_steps,
            "log_every": args.log_every, "seconds": round(seconds, 2),
            **window_figures(run_dir, first, skip_rows=1 if ran > 2 * args.log_every else 0),
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None,
            "syncs_per_step": None if syncs.counts is None else syncs.counts["step"] / max(1, ran),  # accum_steps
            "syncs_per_log_row": None if syncs.counts is None else syncs.counts["log"] / max(1, ran // args.log_every),
            "syncs_total": syncs.total,  # start-up, evaluation and checkpoints included
        }  # fmt: skip
        if phase == "resume":  # it went on from where the first phase stopped, to the last step
            row.update(resumed_at=int(summary["step"]) - ran)
            row.update(ok=row["resumed_at"] == stopped_at and int(summary["step"]) == args.steps)
        stopped_at = int(summary["step"])
        emit(row)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--steps", type=int, default=30, help="steps per config: half, a checkpoint, then resumed")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--utterances", type=int, default=160, help="utterances in each synthetic store")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model and small batches (CPU smoke run)")
    p.add_argument("--set", nargs="*", default=[], help="more config overrides, key=value")
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    p.add_argument("--phase-seconds", type=float, default=60.0, help="train.max_seconds of each phase (a guard)")
    p.add_argument("--budget-seconds", type=float, default=300.0, help="configs not started by then are skipped")
    args = p.parse_args(argv)
    try:
        import codec2vec  # noqa: F401
    except ImportError:  # run from a checkout without installing it
        sys.path.insert(0, str(ROOT / "src"))
    if args.device == "cuda" and not torch.cuda.is_available():
        emit({"error": "gpu_check: --device cuda but torch sees no CUDA device (use --device cpu for a smoke run)"})
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    emit({"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"})
    failed, measured, t0 = 0, {}, time.perf_counter()
    for name in args.configs:
        if time.perf_counter() - t0 > args.budget_seconds:
            failed += 1
            emit({"config": name, "error": f"skipped: the {args.budget_seconds:.0f} s budget was used up"})
            continue
        try:
            row = check(name, args)
            measured[name] = row["base_frames_per_s"]
            failed += not row["ok"]
        except Exception as e:  # noqa: BLE001 -- one line per failed config, the others still run
            failed += 1
            emit({"config": name, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
            traceback.print_exc(file=sys.stderr)
    from codec2vec.pretrain.loaders import GPU_BASE_FRAMES_PER_S

    emit(
        {
            "summary": True,
            "failed": failed,
            "base_frames_per_s": measured,
            "GPU_BASE_FRAMES_PER_S": GPU_BASE_FRAMES_PER_S,
        }
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
