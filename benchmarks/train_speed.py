"""Pre-training step speed: forward + backward + AdamW step of the whole `Pretrainer` on a frame-budget batch.
A benchmark, not a test: it prints parameter counts, steps/s and audio seconds per second.

    python benchmarks/train_speed.py [--preset tiny base] [--codec lyra dac] [--targets reconstruction,online]
                                     [--batch-frames 2000] [--steps 3] [--device cpu] [--json]

Codes are random on the codec's real layout (Lyra v2: 46 x 16; DAC 16 kHz: 12 x 1024; 50 frames/s); the
speed of a step does not depend on the code values. The first step is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def bench(
    preset: str, codec: str, targets: list[str], batch_frames: int, crop: int, steps: int, device: str
) -> dict[str, object]:
    from codec2vec.codecs import declared_layout
    from codec2vec.codecs.base import CodecInfo, config_hash
    from codec2vec.config import load_config
    from codec2vec.data import Batch, _hash64
    from codec2vec.model import count_parameters
    from codec2vec.pretrainer import build_pretrainer

    k, v, d = declared_layout(codec)
    cfg = load_config(None, [f"model.preset={preset}", f"targets={','.join(targets)}"])
    info = CodecInfo(
        name=codec,
        sample_rate=16000,
        frame_rate=50.0,
        num_codebooks=k,
        codebook_size=v,
        config={},
        config_hash=config_hash({}),
    )
    labels = {cfg.targets.clusters_labels: 100} if "clusters" in targets else {}
    torch.manual_seed(0)
    model = build_pretrainer(
        model=cfg.model,
        masking=cfg.masking,
        targets=cfg.targets,
        codec=info,
        codebook_vectors=torch.randn(k, v, d),
        label_classes=labels,
    ).to(device)
    opt = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-4)
    rows = max(1, batch_frames // crop)
    lengths = torch.full((rows,), crop)
    batch = Batch(
        codes=torch.randint(0, v, (rows, k, crop)),
        lengths=lengths,
        seeds=torch.tensor([_hash64("bench", i) for i in range(rows)]),
        labels={n: torch.randint(0, 100, (rows, crop)) for n in labels},
        ids=[str(i) for i in range(rows)],
    )
    batch = batch.to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        if amp is not None:
            with amp:
                out = model(batch)
        else:
            out = model(batch)
        loss = out.loss()
        loss.backward()
        opt.step()
        model.update(1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return float(loss.detach())

    loss = step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sec = (time.perf_counter() - t) / steps
    frames = rows * crop
    return {
        "model": f"codec2vec-{preset}",
        "codec": codec,
        "targets": ",".join(targets),
        "device": device,
        "encoder_params": count_parameters(model.encoder),
        "transformer_params": count_parameters(model.encoder.transformer),
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "batch_frames": frames,
        "seconds_per_step": sec,
        "steps_per_second": 1.0 / sec,
        "audio_seconds_per_second": frames / 50.0 / sec,
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
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [
        bench(p, c, a.targets.split(","), a.batch_frames, a.crop, a.steps, a.device) for p in a.preset for c in a.codec
    ]
    if a.json:
        print(json.dumps({"throughput": rows}))
        return 0
    for r in rows:
        print(
            f"{r['model']:16s} {r['codec']:5s} {r['targets']:28s} encoder {r['encoder_params'] / 1e6:7.2f}M "
            f"(transformer {r['transformer_params'] / 1e6:6.2f}M)  {r['batch_frames']} frames/step  "
            f"{r['seconds_per_step']:.3f} s/step  {r['audio_seconds_per_second']:.1f} audio s/s on {r['device']}",
            file=sys.stdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
