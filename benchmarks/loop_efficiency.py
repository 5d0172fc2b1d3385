"""How much of the bare step's speed the training loop realizes. A benchmark: it prints.

    python benchmarks/loop_efficiency.py STORE [--preset tiny] [--frontend codec] [--steps 60] [--repeats 3]
                                         [--labels km] [--device cpu|cuda] [--threads 1] [--set KEY=VALUE]

Each repeat runs `bench`'s step measurement (`bench.throughput.step_speed`: real loader, `clusters` head, fused
AdamW, median of `--bare-steps` steps after a warm-up) and then `codec2vec pretrain` for `--steps` steps with the
same preset, batch and crop sizes and threads, back to back, so both see the same load on a shared machine; the
repeats interleave. Both figures are real (non-padding) frames per second. The loop's figure is its steady state:
the median over the `metrics.jsonl` rows after the first of `window_frames_per_s` (real frames over the rows' wall
time: logging and data waits included; the dev pass after the last row is not); its start-up-inclusive figure
(`frames_per_s` of the last row: process set-up, first-step warm-up) is printed too, with the loop's data-wait
share. `bench`'s figure is the median step (robust to other processes' bursts), the loop's a mean over wall time:
`realized_vs_mean_step` also sets the loop against the bare step's mean (`mean_frames_per_second`), the
like-for-like figure on a shared machine. One JSON line per repeat, then a summary line: per-repeat ratios, their
median, best and worst. On CUDA the loop runs in bf16 with `data.workers: auto` (pinned batches in loader
processes), as `step_speed` does bf16. The store needs the label set `--labels` (e.g. `codec2vec kmeans STORE
--source codec --name km`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any


def _loop(args: argparse.Namespace) -> dict[str, Any]:
    """`codec2vec pretrain` for `args.steps` steps; the steady and start-up-inclusive real frames/s."""
    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.loop import pretrain

    with tempfile.TemporaryDirectory() as run:
        cfg = load_config(None, [
            f"data.store={args.store}", f"run.dir={run}", f"model.preset={args.preset}",
            f"model.frontend={args.frontend}", "targets=clusters", f"targets.clusters.labels={args.labels}",
            f"data.batch_frames={args.batch_frames}", f"data.crop_frames={args.crop_frames}", "data.min_frames=1",
            f"train.steps={args.steps}", "train.eval_every=0", "train.ckpt_every=0", f"train.threads={args.threads}",
            f"train.log_every={args.log_every}", f"train.device={args.device}", "run.progress=off",
            "run.tensorboard=false", "data.dev_batches=1", *args.set,
        ])  # fmt: skip
        pretrain(cfg)
        rows = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") != "dev"]
    steady = train[1:] or train
    return {
        "loop_frames_per_s": statistics.median(r["window_frames_per_s"] for r in steady),
        "loop_frames_per_s_with_startup": train[-1]["frames_per_s"],
        "loop_data_wait_share": statistics.mean(r["data_wait_share"] for r in steady),
        "loop_real_frame_share": statistics.mean(r["real_frame_share"] for r in steady),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--frontend", default="codec")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--bare-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--labels", default="km")
    ap.add_argument("--batch-frames", type=int, default=1000)
    ap.add_argument("--crop-frames", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="a config override of the loop (data.prefetch=0)")
    args = ap.parse_args()
    import torch

    from codec2vec.bench.throughput import step_speed
    from codec2vec.pretrain.loaders import audio_paths
    from codec2vec.store import TokenStore

    torch.set_num_threads(args.threads)
    store = TokenStore.open(args.store)
    paths = audio_paths(store) if args.frontend != "codec" else {u: "" for u in store.ids()}
    spec = dict(frontend=args.frontend, size=args.preset, codec=store.codec.name, store=args.store,
                audio_store=args.store, paths=paths, batch_frames=args.batch_frames, crop_frames=args.crop_frames,
                steps=args.bare_steps, threads=args.threads, device=args.device)  # fmt: skip
    ratios, vs_mean, with_startup, bares, loops = [], [], [], [], []
    for i in range(args.repeats):
        bare = step_speed(spec)
        loop = _loop(args)
        bares.append(bare["frames_per_second"])
        loops.append(loop["loop_frames_per_s"])
        ratios.append(loop["loop_frames_per_s"] / bare["frames_per_second"])
        vs_mean.append(loop["loop_frames_per_s"] / bare["mean_frames_per_second"])
        with_startup.append(loop["loop_frames_per_s_with_startup"] / bare["frames_per_second"])
        print(json.dumps({"repeat": i, "bare_step_frames_per_s": bare["frames_per_second"], **loop,
                          "bare_step_mean_frames_per_s": bare["mean_frames_per_second"],
                          "realized": ratios[-1], "realized_vs_mean_step": vs_mean[-1],
                          "realized_with_startup": with_startup[-1],
                          "bare_padded_fraction": bare["padded_fraction"]}), flush=True)  # fmt: skip
    print(json.dumps({
        "summary": True, "preset": args.preset, "frontend": args.frontend, "device": args.device,
        "threads": args.threads, "steps": args.steps, "repeats": args.repeats, "set": args.set,
        "bare_step_frames_per_s_median": statistics.median(bares), "loop_frames_per_s_median": statistics.median(loops),
        "realized_median": statistics.median(ratios), "realized_best": max(ratios), "realized_worst": min(ratios),
        "realized_best_of": max(loops) / max(bares), "realized_with_startup_median": statistics.median(with_startup),
        "realized_vs_mean_step_median": statistics.median(vs_mean), "realized_vs_mean_step_worst": min(vs_mean),
    }))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
