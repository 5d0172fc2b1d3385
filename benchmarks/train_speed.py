"""Pre-training step speed: forward + backward + AdamW step of the whole `Pretrainer` on a frame-budget batch.
A benchmark, not a test: it prints parameter counts, steps/s and audio seconds per second.

    python benchmarks/train_speed.py [--preset tiny base] [--codec lyra dac] [--targets reconstruction,online]
                                     [--batch-frames 2000] [--steps 3] [--device cpu] [--json]
    python benchmarks/train_speed.py --store STORE --preset tiny --bucket-pool 0 2048 --steps 30

Without `--store`, codes are random on the codec's real layout (Lyra v2: 46 x 16; DAC 16 kHz: 12 x 1024;
50 frames/s), every row a full crop; the speed of a step does not depend on the code values. With `--store`,
batches come from the pre-training loader (pretrain/data.py `CropLoader`) over the store: real codes and real crop
lengths, padded to each batch's longest row, once per `--bucket-pool` (0 = no length bucketing); the row
reports the share of real (non-padding) frames and audio seconds per second counts real frames only.
The first step is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from typing import Iterator

import torch


def _model(preset: str, info: object, targets: list[str], codebook_vectors: torch.Tensor, device: str) -> object:
    from codec2vec.pretrain.config import load_config
    from codec2vec.pretrain.pretrainer import build_pretrainer

    cfg = load_config(None, [f"model.preset={preset}", f"targets={','.join(targets)}"])
    labels = {cfg.targets.clusters.labels: 100} if "clusters" in targets else {}
    torch.manual_seed(0)
    return build_pretrainer(
        model=cfg.model,
        masking=cfg.masking,
        targets=cfg.targets,
        codec=info,
        codebook_vectors=codebook_vectors,
        label_classes=labels,
    ).to(device)


def _random_batches(codec: str, batch_frames: int, crop: int) -> tuple[object, torch.Tensor, Iterator[object]]:
    from codec2vec.codecs import declared_layout
    from codec2vec.codecs.base import CodecInfo, config_hash
    from codec2vec.pretrain.data import Batch, hash64

    k, v, d = declared_layout(codec)
    info = CodecInfo(codec, 16000, 50.0, k, v, {}, config_hash({}))
    rows = max(1, batch_frames // crop)
    batch = Batch(
        codes=torch.randint(0, v, (rows, k, crop)),
        lengths=torch.full((rows,), crop),
        seeds=torch.tensor([hash64("bench", i) for i in range(rows)]),
        labels={"km": torch.randint(0, 100, (rows, crop))},
        ids=[str(i) for i in range(rows)],
    )
    return info, torch.randn(k, v, d), itertools.repeat(batch)


def _store_batches(
    path: str, batch_frames: int, crop: int, bucket_pool: int
) -> tuple[object, torch.Tensor, Iterator[object]]:
    from codec2vec.pretrain.data import CropLoader, split_ids
    from codec2vec.store import TokenStore

    store = TokenStore.open(path)
    train, _ = split_ids(store, 0.0)
    loader = CropLoader(
        store, train, batch_frames=batch_frames, crop_frames=crop, min_frames=20, bucket_pool=bucket_pool
    )
    return store.codec, store.codebook_vectors(), loader


def bench(
    *,
    preset: str,
    codec: str,
    targets: list[str],
    batch_frames: int,
    crop: int,
    steps: int,
    device: str,
    store: str | None = None,
    bucket_pool: int = 0,
) -> dict[str, object]:
    from codec2vec.model import count_parameters

    if store:
        info, vectors, batches = _store_batches(store, batch_frames, crop, bucket_pool)
        codec = info.name
    else:
        info, vectors, batches = _random_batches(codec, batch_frames, crop)
    model = _model(preset, info, targets, vectors, device)
    opt = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None

    def step() -> tuple[float, float, float]:
        batch = next(batches).to(device)
        opt.zero_grad(set_to_none=True)
        with amp if amp is not None else contextlib.nullcontext():
            out = model(batch)
        loss = out.loss()
        loss.backward()
        opt.step()
        model.update(1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return float(loss.detach()), float(batch.lengths.sum()), float(batch.codes.shape[0] * batch.codes.shape[-1])

    step()  # warm-up
    real = padded = 0.0
    t = time.perf_counter()
    for _ in range(steps):
        loss, r, p = step()
        real, padded = real + r, padded + p
    sec = (time.perf_counter() - t) / steps
    return {
        "model": f"codec2vec-{preset}",
        "codec": codec,
        "targets": ",".join(targets),
        "device": device,
        "batching": (f"bucketed/{bucket_pool}" if bucket_pool > 1 else "padded") if store else "full crops",
        "encoder_params": count_parameters(model.encoder),
        "transformer_params": count_parameters(model.encoder.transformer),
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "batch_frames": padded / steps,
        "real_frame_share": real / padded,
        "seconds_per_step": sec,
        "steps_per_second": 1.0 / sec,
        "audio_seconds_per_second": real / steps / info.frame_rate / sec,
        "loss": loss,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["tiny", "base"])
    ap.add_argument("--codec", nargs="+", default=["lyra", "dac"])
    ap.add_argument("--targets", default="reconstruction")
    ap.add_argument("--batch-frames", type=int, default=2000)
    ap.add_argument("--crop", type=int, default=250)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--store", default=None, help="real crops from this token store (its codec replaces --codec)")
    ap.add_argument("--bucket-pool", type=int, nargs="+", default=[0, 2048], help="with --store: 0 = no bucketing")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: default)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    common = dict(
        targets=a.targets.split(","), batch_frames=a.batch_frames, crop=a.crop, steps=a.steps, device=a.device
    )
    if a.store:
        rows = [
            bench(preset=p, codec="", store=a.store, bucket_pool=b, **common) for p in a.preset for b in a.bucket_pool
        ]
    else:
        rows = [bench(preset=p, codec=c, **common) for p in a.preset for c in a.codec]
    if a.json:
        print(json.dumps({"throughput": rows}))
        return 0
    for r in rows:
        print(
            f"{r['model']:16s} {r['codec']:5s} {r['targets']:28s} encoder {r['encoder_params'] / 1e6:7.2f}M "
            f"(transformer {r['transformer_params'] / 1e6:6.2f}M)  {r['batching']:14s} {r['batch_frames']:.0f} "
            f"frames/step, {100 * r['real_frame_share']:.1f}% real  {r['seconds_per_step']:.3f} s/step  "
            f"{r['audio_seconds_per_second']:.1f} audio s/s on {r['device']}",
            file=sys.stdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
