"""The CUDA paths of the pre-training loop, checked on the CPU with stand-ins: masks drawn on the CPU and pinned with
the batch (never a device tensor pinned, never the device lengths read back), no host sync per step beyond the
log rows (syncing calls counted), rows shared evenly across ranks, another world size on resume, the EMA in a
few kernels, fp16's skipped steps, float64 dev sums and the loader's warmed-up read speed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from codec2vec.pretrain.pretrainer import Pretrainer
from conftest import structured_store, tiny_config

_FORWARD = Pretrainer.forward  # the real forward, for tests that patch it
SYNC_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero", "cpu", "numpy")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gpu_paths") / "store"
    structured_store(p, n=24)
    return p


def _run(store: Path, run_dir: Path, *extra: str) -> Any:
    from codec2vec.pretrain.loop import setup

    cfg = tiny_config(store, run_dir, "data.prefetch=0", "model.layer_drop=0", *extra)
    return setup(cfg, rank=0, world=1, device=torch.device("cpu"))


class _PinShim:
    """`Tensor.pin_memory` as a CUDA build has it, on a CPU-only machine: only CPU tensors can be pinned (anything
    else raises, as `cannot pin 'CUDABoolType'` does); records what was pinned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pinned: list[torch.Tensor] = []

        def pin(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if t.device.type != "cpu":
                raise RuntimeError(f"cannot pin '{t.device.type}' tensor: only dense CPU tensors can be pinned")
            self.pinned.append(t)
            return t

        monkeypatch.setattr(torch.Tensor, "pin_memory", pin)


# --- 1: masks are drawn on the CPU and travel with the batch ---------------------------------------


def test_training_batch_moved_to_a_device_needs_no_device_lengths_for_its_masks(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's batch moved to a device ("meta": no values can be read back, as from a busy GPU) still gives the
    forward its masks: they were drawn from the CPU lengths before the move, and nothing non-CPU is pinned."""
    from codec2vec.pretrain.loop import _next_batch

    shim = _PinShim(monkeypatch)
    run = _run(store_path, tmp_path / "run")  # quantizer dropout on (the default): keep levels too
    run.device = torch.device("meta")  # the batch copy of the step goes to the "device"
    batch = _next_batch(run)
    assert batch.codes.device.type == "meta" and batch.lengths.device.type == "meta"
    mask, keep = run.model.masks(batch)  # reading meta lengths back would raise
    assert mask.device.type == "meta" and mask.shape == batch.codes.shape[::2]
    assert keep is not None and keep.device.type == "meta" and keep.shape == batch.lengths.shape
    assert all(t.device.type == "cpu" for t in shim.pinned)


def test_loader_draws_masks_on_the_cpu_and_pins_them_with_the_batch(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codec2vec.pretrain.loaders import ProcessLoader, StoreSource
    from codec2vec.pretrain.masking import span_mask

    run = _run(store_path, tmp_path / "run")
    loader = ProcessLoader(run.loader, source=StoreSource(store_root=str(store_path)), masker=run.model.masker())
    batch = next(loader)
    assert batch.mask is not None and batch.keep is not None
    assert batch.mask.device.type == "cpu" and batch.keep.device.type == "cpu"
    assert torch.equal(batch.mask, span_mask(batch.lengths, batch.codes.shape[-1], run.model.masking, batch.seeds))
    shim = _PinShim(monkeypatch)
    pinned = batch.pin_memory()  # what the DataLoader's pinning thread calls
    assert all(t.device.type == "cpu" for t in shim.pinned)
    assert any(t is batch.mask for t in shim.pinned) and any(t is batch.keep for t in shim.pinned)
    moved = pinned.to("meta")  # then one non-blocking copy, masks included
    assert moved.mask is not None and moved.mask.device.type == "meta" and moved.seeds.device.type == "meta"


def test_masks_are_refused_from_device_lengths() -> None:
    from codec2vec.pretrain.masking import Masker, MaskingConfig

    with pytest.raises(ValueError, match="CPU"):
        Masker(MaskingConfig())(torch.ones(2, dtype=torch.long, device="meta"), 4, torch.ones(2, dtype=torch.long))


# --- 3: no host sync per step ----------------------------------------------------------------------


class _SyncCounter:
    """Counts the calls that make a CUDA host wait for the device (reading values back, data-dependent shapes:
    `item`, `tolist`, `bool`/`int`/`float` of a tensor, `nonzero`, boolean-mask indexing, `bincount`, ...) while
    `on`; host-side work that runs on CPU tensors on a GPU too (drawing masks, the loader) is paused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on, self.calls = False, []

        def counted(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if self.on:
                    self.calls.append(name)
                return fn(*args, **kwargs)

            return wrapper

        for name in SYNC_METHODS:
            monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        for name in ("nonzero", "bincount", "masked_select", "unique"):
            monkeypatch.setattr(torch, name, counted(name, getattr(torch, name)))
        getitem = torch.Tensor.__getitem__

        def index(t: torch.Tensor, idx: Any) -> Any:
            parts = idx if isinstance(idx, tuple) else (idx,)
            if self.on and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                self.calls.append("bool-index")
            return getitem(t, idx)

        monkeypatch.setattr(torch.Tensor, "__getitem__", index)
        setitem = torch.Tensor.__setitem__

        def assign(t: torch.Tensor, idx: Any, value: Any) -> Any:
            parts = idx if isinstance(idx, tuple) else (idx,)
            if self.on and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                self.calls.append("bool-assign")
            return setitem(t, idx, value)

        monkeypatch.setattr(torch.Tensor, "__setitem__", assign)

    def paused(self, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            on, self.on = self.on, False
            try:
                return fn(*args, **kwargs)
            finally:
                self.on = on

        return wrapper


@pytest.mark.parametrize("targets", ["reconstruction,online", "online"])
def test_the_step_makes_one_host_sync_per_micro_batch(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, targets: str
) -> None:
    """Between log rows a step (2 micro-batches; train.max_seconds set, progress on) makes one sync per micro-batch:
    the forward's one `nonzero()` of the masked frames, shared by every target, head and teacher layer."""
    from codec2vec.pretrain import loop as train

    extra = ("train.steps=100", "train.log_every=50", "train.eval_every=0", "train.ckpt_every=0")
    run = _run(store_path, tmp_path / "run", f"targets={targets}", "train.accum_steps=2", "train.max_seconds=3600",
               "run.progress=on", "targets.online.reseed=true", *extra)  # fmt: skip
    run.sync_every_step = False  # the CUDA loop: figures stay on the device until a log row
    run.log = train.start_log(run)
    run.model.train()
    counter = _SyncCounter(monkeypatch)
    prepare = counter.paused(getattr(run.model, "prepare", lambda batch: batch))  # masks are drawn on the CPU
    monkeypatch.setattr(run.model, "prepare", prepare, raising=False)
    loader = run.loader
    monkeypatch.setattr(run, "loader", type("L", (), {"__next__": counter.paused(lambda self: next(loader))})())
    per_step = []
    for _ in range(3):
        counter.calls.clear()
        counter.on = True
        loss = train.train_step(run)
        run.out_of_time = train._out_of_time(run)
        train.log_step(run, loss)
        train.maybe_evaluate(run)
        train.maybe_save(run)
        counter.on = False
        per_step.append(list(counter.calls))
    assert all(calls == ["nonzero", "nonzero"] for calls in per_step), ([len(c) for c in per_step], per_step)
    assert run.step == 3 and run.pending  # nothing was read back: no row was due


# --- 4, 5: rows shared evenly, another world size --------------------------------------------------


def test_rows_are_a_multiple_of_the_world_size(store_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    ids = list(store.ids())
    for world in (2, 3):
        loaders = [
            CropLoader(store, ids, batch_frames=520, crop_frames=100, rank=r, world_size=world) for r in range(world)
        ]
        for _ in range(2 * len(loaders[0]._plan)):  # over an epoch boundary
            sizes = {len(next(loader).ids) for loader in loaders}
            assert len(sizes) == 1, (world, sizes)  # every rank gets as many rows
        assert all(len(b) % world == 0 and len(b) >= world for b in loaders[0]._plan)


def test_pack_keeps_a_multiple_and_carries_the_rest() -> None:
    from codec2vec.pretrain.data import Crop, pack

    crops = [Crop(f"u{i}", 0, 10, i) for i in range(11)]
    assert [len(b) for b in pack(crops, 50)] == [5, 5, 1]  # the old rule, one process
    out = pack(crops, 50, multiple=2)
    assert [len(b) for b in out] == [4, 4, 2]  # the fifth rows start the next batch; the odd tail row is cut
    assert [c.utt_id for b in out for c in b] == [f"u{i}" for i in range(10)]


def test_resume_on_another_world_size_says_what_changes(store_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    ids = list(store.ids())

    def loader(world: int, multiple: int = 0, rank: int = 0) -> CropLoader:
        kw = {"rank": rank, "world_size": world, "row_multiple": multiple}
        return CropLoader(store, ids, batch_frames=400, crop_frames=100, seed=5, **kw)

    two = loader(2)
    for _ in range(3):
        next(two)
    saved = two.state_dict()
    assert saved["world_size"] == 2 and saved["row_multiple"] == 2
    one = loader(1)
    one.load_state_dict(saved)
    note = one.plan_change(saved)
    assert note is not None and "2 process(es) on 1" in note and "data.row_multiple" in note
    assert loader(2, rank=1).plan_change(saved) is None
    # data.row_multiple set: the plan is the same on 2 processes and on 1, and resuming says so
    two, one = loader(2, 2), loader(1, 2)
    for _ in range(3):
        next(two)
    one.load_state_dict(two.state_dict())
    note = one.plan_change(two.state_dict())
    assert note is not None and "the same batch plan" in note
    for _ in range(2 * len(one._plan)):  # over an epoch boundary: the same global batches
        assert one.next_plan() == two.next_plan()


def test_row_multiple_must_be_shared_evenly(store_path: Path) -> None:
    from codec2vec.common.errors import ConfigError
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    with pytest.raises(ConfigError, match="data.row_multiple: 3 rows"):
        CropLoader(store, list(store.ids()), batch_frames=400, crop_frames=100, world_size=2, row_multiple=3)


# --- 5: EMA, fp16, dev sums, read speed ------------------------------------------------------------


def test_teacher_ema_is_one_foreach_lerp(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(store_path, tmp_path / "run", "targets=online")
    (target,) = run.model.target_list()
    student = dict(run.model.encoder.transformer.named_parameters())
    with torch.no_grad():
        for p in student.values():
            p.add_(0.5)
    before = {n: t.detach().clone() for n, t in target.teacher.named_parameters()}
    calls = []
    lerp = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: (calls.append(len(a[0])), lerp(*a))[1])
    from codec2vec.pretrain.targets.online import ema_decay

    run.model.update(3)
    d = ema_decay(3, target.ema_start, target.ema_end, target.ema_anneal_steps)
    assert len(calls) == 1 and calls[0] == sum(1 for n in before if not n.startswith("pos_conv."))
    for n, t in target.teacher.named_parameters():
        want = student[n].detach() if n.startswith("pos_conv.") else d * before[n] + (1 - d) * student[n].detach()
        assert torch.allclose(t, want, atol=1e-6), n


def _overflowing_fp16_run(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, targets: str) -> Any:
    """A run with the fp16 loop's grad scaler (on the CPU) whose every loss overflows (inf) until the test puts
    `Pretrainer.forward` back (`_FORWARD`)."""
    from codec2vec.pretrain.pretrainer import Pretrainer

    run = _run(store_path, tmp_path / "run", targets)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)

    def overflow(self: Pretrainer, batch: Any) -> Any:
        out = _FORWARD(self, batch)
        out.loss_sums = {n: v * float("inf") for n, v in out.loss_sums.items()}
        return out

    monkeypatch.setattr(Pretrainer, "forward", overflow)
    return run


def test_fp16_overflow_skips_the_step_and_the_teacher_update_without_stopping(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss that overflows under fp16 makes the grad scaler skip the step: the teacher and codebooks stay put, the
    step is counted (`fp16_skipped_steps`), and the run goes on."""
    from codec2vec.pretrain import loop as train
    from codec2vec.pretrain.pretrainer import Pretrainer

    run = _overflowing_fp16_run(store_path, tmp_path, monkeypatch, "targets=reconstruction,online")
    forward = _FORWARD
    updates: list[int] = []
    monkeypatch.setattr(run.model, "update", updates.append)
    weights = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    online = next(t for t in run.model.target_list() if t.name == "online")
    train.train_step(run)  # the CPU loop reads the figures at once: an inf loss would stop it here
    assert updates == [] and run.skipped_steps == 1 and run.step == 1
    assert all(torch.equal(p, weights[n]) for n, p in run.model.named_parameters())
    assert online._pending is None  # the skipped step's codebook statistics are dropped, not applied with the next
    monkeypatch.setattr(Pretrainer, "forward", forward)
    train.train_step(run)
    assert updates == [2] and run.skipped_steps == 1


def test_fp16_gradient_overflow_with_a_finite_loss_is_counted_as_a_skip(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16's usual failure: the loss is finite but a gradient overflows; the scaler skips the step, and the loop
    counts it (a run whose gradients keep overflowing stops after `FP16_MAX_SKIPS`), without a teacher update."""
    from codec2vec.pretrain import loop as train

    run = _run(store_path, tmp_path / "run", "targets=reconstruction,online")
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    unscale = run.scaler.unscale_

    def overflowing(opt: Any) -> None:
        next(p for p in run.model.trainable_parameters() if p.grad is not None).grad.fill_(float("inf"))
        unscale(opt)

    monkeypatch.setattr(run.scaler, "unscale_", overflowing)
    updates: list[int] = []
    monkeypatch.setattr(run.model, "update", updates.append)
    train.train_step(run)
    assert updates == [] and run.skipped_steps == 1 and run.skip_streak == 1 and math.isfinite(run.last_loss)
    monkeypatch.setattr(train, "FP16_MAX_SKIPS", 1)
    with pytest.raises(FloatingPointError, match="overflowed for 2 steps in a row"):
        train.train_step(run)


def test_dev_sums_are_all_reduced_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    from codec2vec.pretrain.pretrainer import TargetSums

    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: seen.append(t.dtype))
    big = float(2**24 + 1)  # frames a long evaluation counts; float32 rounds it
    out = TargetSums({"a": 0.5}, {"a": big}, {"a": big}).all_reduce(2, torch.device("cpu"))
    assert seen == [torch.float64] and out.count["a"] == big and out.correct["a"] == big


def test_read_speed_leaves_the_first_batch_untimed(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numba's first compile (here: a clock that jumps 10 s in the first read) is not counted as reading time."""
    from codec2vec.pretrain import loaders as audio_data
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.pretrain.loaders import StoreSource, read_speed
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    plan = CropLoader(store, list(store.ids()), batch_frames=400, crop_frames=100)
    clock = [0.0]
    monkeypatch.setattr(audio_data.time, "perf_counter", lambda: clock[0])
    source = StoreSource(store_root=str(store_path))
    collate = source.collate
    reads: list[int] = []

    def timed(crops: Any) -> Any:
        clock[0] += 10.0 if not reads else 0.01  # the first read compiles
        reads.append(len(crops))
        return collate(crops)

    monkeypatch.setattr(source, "collate", timed)
    speed = read_speed(source, plan, seconds=1.0, max_batches=4)
    frames = sum(sum(c.stop - c.start for c in b) for b in plan.peek(5)[1:5])
    assert speed == pytest.approx(frames / 0.04)


def test_fp16_losses_that_stay_infinite_stop_the_run(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A diverged fp16 run (every step overflows, however low the scale) stops after `FP16_MAX_SKIPS` in a row."""
    from codec2vec.pretrain import loop as train

    run = _overflowing_fp16_run(store_path, tmp_path, monkeypatch, "targets=reconstruction")
    monkeypatch.setattr(train, "FP16_MAX_SKIPS", 2, raising=False)
    train.train_step(run)
    train.train_step(run)
    with pytest.raises(FloatingPointError, match="3 steps in a row"):
        train.train_step(run)


def test_resuming_on_another_world_size_warns_naming_both(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of one process resumed by rank 0 of two (collectives stubbed: one process plays rank 0) gets
    a warning line naming both world sizes and what changes."""
    import torch.distributed as dist

    from codec2vec.pretrain import loop as train
    from codec2vec.pretrain.loop import pretrain

    pretrain(tiny_config(store_path, tmp_path / "run", "train.steps=2", "train.eval_every=0"))
    capsys.readouterr()
    monkeypatch.setattr(train, "wrap_ddp", lambda model, *args: model)
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, **kw: None)
    monkeypatch.setattr(dist, "all_gather_object", lambda out, obj: None)
    cfg = tiny_config(store_path, tmp_path / "run", "train.steps=4", "train.eval_every=0")
    run = train.setup(cfg, rank=0, world=2, device=torch.device("cpu"))
    train.resume(run)
    assert run.step == 2
    train.start_log(run)
    err = capsys.readouterr().err
    assert "warning: resuming a run saved by 1 process(es) on 2" in err and "data.row_multiple" in err
