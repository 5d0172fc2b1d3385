"""Build a Codec2Vec preset (default `base`, HuBERT Base sizes), print its parameter counts, and time one
forward + backward pass of the pre-trainer on CPU.

    python benchmarks/model_params.py [--preset base] [--batch 2] [--frames 250] [--targets reconstruction]

The input mimics DAC 16 kHz tokens: K=12 codebooks of V=1024 entries, 1024-dimensional codebook vectors.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from codec2vec.codecs.base import CodecInfo, config_hash
from codec2vec.model import count_parameters, model_config
from codec2vec.pretrain.data import Batch
from codec2vec.pretrain.masking import MaskingConfig
from codec2vec.pretrain.pretrainer import build_pretrainer
from codec2vec.pretrain.targets import TargetsConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--codebooks", type=int, default=12)
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--codebook-dim", type=int, default=1024)
    p.add_argument("--targets", default="reconstruction", help="comma-separated (reconstruction, online)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    torch.manual_seed(0)
    k, v = a.codebooks, a.codebook_size
    info = CodecInfo("dac", 16000, 50.0, k, v, {}, config_hash({}))
    model = build_pretrainer(
        model=model_config(a.preset),
        masking=MaskingConfig(),
        targets=TargetsConfig(names=a.targets.split(",")),
        codec=info,
        codebook_vectors=torch.randn(k, v, a.codebook_dim) * 0.1,
        label_classes={},
    )
    enc = model.encoder
    batch = Batch(
        codes=torch.randint(0, v, (a.batch, k, a.frames)),
        lengths=torch.full((a.batch,), a.frames),
        seeds=torch.arange(a.batch),
    )
    model.train()
    t0 = time.perf_counter()
    out = model(batch)
    t1 = time.perf_counter()
    loss = out.loss()
    loss.backward()
    t2 = time.perf_counter()
    with torch.no_grad():  # the fused (K*V, D) embedding_bag vs K separate lookups, same result
        e0 = time.perf_counter()
        fused = enc.embed(batch.codes)
        e1 = time.perf_counter()
        tables = enc.table.view(k, v, -1)
        naive = sum(tables[i][batch.codes[:, i]] for i in range(k))  # (B, T, D)
        e2 = time.perf_counter()
        assert torch.allclose(fused, naive, atol=1e-4)
    grads = sum(int(p.grad is not None) for p in model.trainable_parameters())
    row = {
        "preset": a.preset,
        "encoder_params": count_parameters(enc),
        "backbone_params": count_parameters(enc) - enc.table.numel(),  # without the K*V*D_codec tables
        "embedding_table_params": enc.table.numel(),
        "pretrainer_params": count_parameters(model),
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "batch": [a.batch, k, a.frames],
        "forward_s": round(t1 - t0, 3),
        "backward_s": round(t2 - t1, 3),
        "embed_ms": round(1000 * (e1 - e0), 2),
        "naive_embed_ms": round(1000 * (e2 - e1), 2),
        "loss": round(float(loss.detach()), 4),
        "params_with_grad": grads,
        "threads": torch.get_num_threads(),
    }
    if a.json:
        print(json.dumps(row))
        return
    print(
        f"{a.preset}: encoder {row['encoder_params'] / 1e6:.1f}M parameters "
        f"(backbone {row['backbone_params'] / 1e6:.1f}M + tables {k}x{v}x{a.codebook_dim} = "
        f"{row['embedding_table_params'] / 1e6:.1f}M); pre-trainer with heads {row['pretrainer_params'] / 1e6:.1f}M"
    )
    print(
        f"one batch {a.batch} x {a.frames} frames (K={k}): forward {row['forward_s']:.2f} s, "
        f"backward {row['backward_s']:.2f} s on CPU ({row['threads']} threads); loss {row['loss']:.3f}"
    )
    print(
        f"embedding sum: fused lookup {row['embed_ms']:.1f} ms vs {k} separate lookups {row['naive_embed_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
