"""How much of the bare step's speed the training loop realizes (issue 11, acceptance 6). A benchmark: it prints.

    python benchmarks/loop_efficiency.py STORE [--preset tiny] [--frontend codec] [--steps 40] [--labels km]

Runs `bench`'s step measurement (`bench.throughput.step_speed`: real loader, `clusters` head, fused AdamW,
median step) and then `codec2vec pretrain` for `--steps` steps with the same preset, batch and crop sizes, one
thread each, back to back, and prints both in real (non-padding) frames per second and their ratio. The store
needs the label set `--labels` (e.g. `codec2vec kmeans STORE --source mfcc --name km`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--frontend", default="codec")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--labels", default="km")
    ap.add_argument("--batch-frames", type=int, default=1000)
    ap.add_argument("--crop-frames", type=int, default=500)
    args = ap.parse_args()
    import torch

    from codec2vec.bench.throughput import step_speed
    from codec2vec.config import load_config
    from codec2vec.frontends.audio_data import audio_paths
    from codec2vec.store import TokenStore
    from codec2vec.train import pretrain

    torch.set_num_threads(1)
    store = TokenStore.open(args.store)
    paths = audio_paths(store) if args.frontend != "codec" else {u: "" for u in store.ids()}
    spec = dict(frontend=args.frontend, size=args.preset, codec=store.codec.name, store=args.store,
                audio_store=args.store, paths=paths, batch_frames=args.batch_frames, crop_frames=args.crop_frames,
                steps=5, threads=1, device="cpu")  # fmt: skip
    bare = step_speed(spec)
    with tempfile.TemporaryDirectory() as run:
        cfg = load_config(None, [
            f"data.store={args.store}", f"run.dir={run}", f"model.preset={args.preset}",
            f"model.frontend={args.frontend}", "targets=clusters", f"targets.clusters_labels={args.labels}",
            f"data.batch_frames={args.batch_frames}", f"data.crop_frames={args.crop_frames}", "data.min_frames=1",
            f"train.steps={args.steps}", "train.eval_every=0", "train.ckpt_every=0", "train.threads=1",
            f"train.log_every={args.steps}", "train.device=cpu", "run.progress=off", "run.tensorboard=false",
        ])  # fmt: skip
        pretrain(cfg)
        rows = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    loop = [r for r in rows if r.get("split") != "dev"][-1]["frames_per_s"]
    out = {"bare_step_frames_per_s": bare["frames_per_second"], "loop_frames_per_s": loop,
           "realized": loop / bare["frames_per_second"], "preset": args.preset, "frontend": args.frontend}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
