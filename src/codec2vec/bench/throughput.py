"""Pre-training throughput, data loading included: codec, waveform and mel front ends on the same Transformer.

Each configuration (front end x size) builds the real `Pretrainer` (HuBERT span masking, the `clusters` head with
100 classes, random labels) and AdamW, and runs the real loaders on the bench corpus: `CropLoader` over a token
store for the codec front end, `AudioCropLoader` (in-process) over the same utterances' FLAC files for the others,
with the same plan (seed, crop and batch sizes in frames = audio seconds * 50), so every front end sees the same
batch in audio seconds. After a warm-up step, `steps` steps are timed piece by piece: data, forward (front end /
Transformer / masks, heads and loss), backward, optimizer; rates use the median step. The front end's share is its
forward + backward alone on the same batch, plus an AdamW update of its parameters alone, over the step's compute
(forward + backward + optimizer). On CUDA the step runs in bf16 autocast and is synchronised before each reading.
Each configuration runs in its own process (peak memory is that process's max RSS on CPU, `max_memory_allocated` on
CUDA) unless `isolate=False`. `loader_needs` sets each store's read speed (one process) against what a base codec
model consumes, here and on a GPU (the measured step on CUDA, else the H200 reference `GPU_BASE_FRAMES_PER_S`), and
gives the loader processes each needs (`pretrain/loaders.py: loader_processes`, the formula `data.workers: auto` uses).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch

from codec2vec.pretrain.config import load_config
from codec2vec.pretrain.data import CropLoader
from codec2vec.pretrain.loaders import GPU_BASE_FRAMES_PER_S, AudioCropLoader, loader_processes
from codec2vec.pretrain.pretrainer import build_pretrainer
from codec2vec.store import TokenStore


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class _Timer:
    """Forward time of a module through hooks (summed over calls)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.total, self._t0, self.device = 0.0, 0.0, device
        module.register_forward_pre_hook(lambda *_: setattr(self, "_t0", _sync(device)))
        module.register_forward_hook(lambda *_: setattr(self, "total", self.total + _sync(device) - self._t0))


def _build(spec: dict[str, Any], device: torch.device) -> tuple[Any, Any, Any]:

    front = spec["frontend"]
    cfg = load_config(None, [f"model.preset={spec['size']}", f"model.frontend={front}", "targets=clusters"])
    store = TokenStore.open(spec["store"] if front == "codec" else spec["audio_store"])
    torch.manual_seed(0)
    model = build_pretrainer(
        model=cfg.model,
        masking=cfg.masking,
        targets=cfg.targets,
        codec=store.codec,
        codebook_vectors=store.codebook_vectors() if front == "codec" else None,
        label_classes={cfg.targets.clusters.labels: 100},
    ).to(device)
    kw = dict(batch_frames=spec["batch_frames"], crop_frames=spec["crop_frames"], min_frames=1, seed=0)
    ids = sorted(set(store.ids()) & set(spec["paths"]))
    loader: Any = CropLoader(store, ids, **kw)  # type: ignore[arg-type]
    if front != "codec":
        loader = AudioCropLoader(loader, paths=spec["paths"], workers=0)
    t = cfg.train
    spec["train"] = dict(lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay)
    return model, loader, cfg.targets.clusters.labels


def _profile(step: Any) -> list[dict[str, Any]]:
    """Top operators of one step by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) or 1.0
    return [
        {"op": e.key, "self_ms": e.self_cpu_time_total / 1000, "share": e.self_cpu_time_total / total, "calls": e.count}
        for e in ops[:12]
    ]


def _frontend_cost(
    model: Any, batch: Any, *, steps: int, device: torch.device, amp: Any, train: dict[str, Any]
) -> tuple[float, float]:
    """Seconds of `steps` forward+backward passes of the front end alone on `batch`, and of its share of the
    optimizer update (the codec tables are large)."""
    t0 = _sync(device)
    for _ in range(steps):
        with amp:
            x = model.encoder.frontend(batch.inputs, batch.lengths)
        x.float().sum().backward()
    front_alone = _sync(device) - t0
    params = [p for p in model.encoder.frontend.parameters() if p.requires_grad]
    front_opt = torch.optim.AdamW(params, fused=True, **train)
    t0 = _sync(device)
    for _ in range(steps):
        front_opt.step()
    return front_alone, _sync(device) - t0


def _peak_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB (the GPU's allocator on CUDA, the resident set on the CPU)."""
    import resource

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_speed(spec: dict[str, Any]) -> dict[str, Any]:
    """Time `spec['steps']` training steps of one configuration; returns one throughput row."""
    device = torch.device(spec["device"])
    torch.set_num_threads(int(spec["threads"]))
    model, loader, label_name = _build(spec, device)
    model.train()
    tr = spec["train"]  # the pre-training loop's optimizer (fused AdamW), betas, eps and weight decay
    opt = torch.optim.AdamW(list(model.trainable_parameters()), fused=True, **tr)
    front_t, trans_t = _Timer(model.encoder.frontend, device), _Timer(model.encoder.transformer, device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    g = torch.Generator().manual_seed(0)
    parts: dict[str, list[float]] = {"data": [], "forward": [], "backward": [], "optimizer": []}
    real_frames, padded_frames = 0, 0

    def one(timed: bool) -> Any:
        nonlocal real_frames, padded_frames
        t0 = _sync(device)
        batch = next(loader)
        batch.labels = {label_name: torch.randint(0, 100, (len(batch.ids), batch.codes.shape[-1]), generator=g)}
        batch = model.prepare(batch).to(device)  # masks drawn on the CPU, copied with the batch
        t1 = _sync(device)
        with amp:
            loss = model(batch).loss()
        t2 = _sync(device)
        loss.backward()
        t3 = _sync(device)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = _sync(device)
        if timed:
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(dt)
            real_frames += int(batch.lengths.sum())
            padded_frames += int(batch.lengths.numel() * batch.codes.shape[-1])
        return batch

    for _ in range(int(spec.get("warmup", 1))):
        one(False)
    front_t.total = trans_t.total = 0.0
    steps = int(spec["steps"])
    for _ in range(steps):
        batch = one(True)
    fwd_front, fwd_trans = front_t.total, trans_t.total
    front_alone, front_update = _frontend_cost(model, batch, steps=steps, device=device, amp=amp, train=tr)
    opt.zero_grad(set_to_none=True)
    # Medians over the timed steps: robust to other processes' bursts on a shared machine.
    med = {k: statistics.median(v) for k, v in parts.items()}
    step_s = statistics.median([sum(x) for x in zip(*parts.values())])
    compute_s = statistics.median(
        [f + b + o for f, b, o in zip(parts["forward"], parts["backward"], parts["optimizer"])]
    )
    frames_per_step = real_frames / steps
    peak = _peak_mb(device)
    row = {
        "model": spec["frontend"],
        "size": spec["size"],
        "codec": spec.get("codec", "") if spec["frontend"] == "codec" else "",
        "device": str(device),
        "threads": int(spec["threads"]),
        "batch_audio_seconds": real_frames / steps / 50,
        "padded_fraction": 1 - real_frames / max(1, padded_frames),
        "audio_seconds_per_second": frames_per_step / 50 / step_s,
        "steps_per_second": 1 / step_s,
        "frames_per_second": frames_per_step / step_s,
        "mean_frames_per_second": real_frames / sum(map(sum, zip(*parts.values()))),  # mean step: bursts included
        "compute_frames_per_second": frames_per_step / compute_s,
        "step_ms": 1000 * step_s,
        **{f"{k}_ms": 1000 * v for k, v in med.items()},
        "forward_frontend_ms": 1000 * fwd_front / steps,
        "forward_transformer_ms": 1000 * fwd_trans / steps,
        "frontend_fwd_bwd_ms": 1000 * front_alone / steps,
        "frontend_update_ms": 1000 * front_update / steps,
        "frontend_share": (front_alone + front_update) / steps / compute_s,
        "params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6,
        "frontend_params_m": sum(p.numel() for p in model.encoder.frontend.parameters()) / 1e6,
        "peak_memory_mb": peak,
    }
    if spec.get("profile") and device.type == "cpu":
        row["profile"] = _profile(lambda: one(False))
    return row


def measure_throughput(specs: list[dict[str, Any]], *, isolate: bool = True, progress: Any = None) -> list[dict]:
    """One row per spec; each in a fresh spawned process when `isolate` (clean peak memory, no shared caches)."""
    rows = []
    for spec in specs:
        if progress:
            progress(f"throughput: {spec['frontend']} {spec['size']} ({spec.get('codec', '')})")
        if isolate:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(1) as pool:
                rows.append(pool.apply(step_speed, (spec,)))
        else:
            rows.append(step_speed(spec))
    return rows


def loader_needs(reads: list[dict[str, Any]], throughput: list[dict[str, Any]]) -> dict[str, Any]:
    """Per store: its read speed (frames/s, one process) against the frames/s a base codec model consumes on this
    device (measured: the step's compute alone) and on a GPU (measured on CUDA, else the H200 reference), and the
    loader processes each consumption needs."""
    base = [r for r in throughput if r["model"] == "codec" and r["size"] == "base"] or [
        r for r in throughput if r["model"] == "codec"
    ]
    out: dict[str, Any] = {}
    for r in reads:
        if r["source"] == "flac":
            continue
        for t in base:
            if t["codec"] != r["source"] and len(base) > 1:
                continue
            need, reads_fps = t["compute_frames_per_second"], r["frames_per_second"]
            measured = t["device"].startswith("cuda") and t["size"] == "base"
            gpu = need if measured else GPU_BASE_FRAMES_PER_S
            out[r["source"]] = {
                "model": f"codec {t['size']} ({t['device']})",
                "consumes_frames_per_second": need,
                "reads_frames_per_second": reads_fps,
                "ratio": reads_fps / need,
                "loader_processes_needed": loader_processes(need, reads_fps),
                "gpu_consumes_frames_per_second": gpu,
                "gpu_consumption": f"{'measured' if measured else 'H200 reference'}, codec base, bf16",
                "gpu_ratio": reads_fps / gpu,
                "gpu_loader_processes": loader_processes(gpu, reads_fps),
            }
    return out


__all__ = ["loader_needs", "measure_throughput", "step_speed"]
