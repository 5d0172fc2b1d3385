"""The pre-training loop: data plan, loader processes and read-ahead (`data.workers`, `data.prefetch`), the data-wait
figures of `metrics.jsonl`, checkpoints, a short run that learns, exact resume after SIGKILL, and torchrun (2 CPU
processes, gloo) matching one process on the same global batch."""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.pretrain.config import load_config, save_config
from conftest import kill_at, read_metrics, structured_store, tiny_config

K, V = 8, 16


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("train") / "store"
    structured_store(p)
    return p


# --- data -----------------------------------------------------------------------------------------


def test_plan_is_global_deterministic_and_resumable(store_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader, split_ids
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    train, dev = split_ids(store, 0.15)
    assert set(train).isdisjoint(dev) and sorted(train + dev) == sorted(store.ids()) and dev
    assert split_ids(store, 0.15) == (train, dev)

    def loader(rank: int = 0, world: int = 1) -> CropLoader:  # one plan for 1 and 2 processes: data.row_multiple
        kw = {"rank": rank, "world_size": world, "row_multiple": 2}
        return CropLoader(store, train, batch_frames=400, crop_frames=100, seed=3, **kw)

    one, r0, r1 = loader(), loader(0, 2), loader(1, 2)
    for _ in range(12):  # more than an epoch
        b, b0, b1 = next(one), next(r0), next(r1)
        assert b.codes.shape[0] * b.codes.shape[2] <= 400 and b.codes.shape[2] <= 100
        assert sorted(b.ids) == sorted(b0.ids + b1.ids) and b0.ids == b.ids[0::2]  # ranks split the global batch
        for rows, batch in ((b0, b), (b1, b)):
            for j, uid in enumerate(rows.ids):
                i = batch.ids.index(uid)
                n = int(rows.lengths[j])
                assert n == int(batch.lengths[i]) and int(rows.seeds[j]) == int(batch.seeds[i])
                assert torch.equal(rows.codes[j, :, :n], batch.codes[i, :, :n])
    # The position is plain data: a fresh loader continues exactly.
    state = one.state_dict()
    again = loader()
    again.load_state_dict(state)
    for _ in range(5):
        a, b = next(one), next(again)
        assert a.ids == b.ids and torch.equal(a.codes, b.codes) and torch.equal(a.seeds, b.seeds)
    # Crops are real windows of the utterances.
    b = next(loader())
    for j, uid in enumerate(b.ids):
        full = store[uid]
        n = int(b.lengths[j])
        window = b.codes[j, :, :n]
        assert any(torch.equal(full[:, s : s + n], window) for s in range(full.shape[1] - n + 1))


def test_bucketed_batches_are_mostly_real_frames_and_cover_each_epoch(tmp_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader, real_frame_share

    store = structured_store(tmp_path / "store", n=300)  # utterances of 60-219 frames, crops of up to 150
    ids = store.ids()

    def share_and_ids(pool: int) -> tuple[float, list[str]]:
        loader = CropLoader(store, ids, batch_frames=1200, crop_frames=150, seed=1, bucket_pool=pool)
        real = padded = 0.0
        seen: list[str] = []
        while loader.epoch == 0:
            b = next(loader)
            assert b.codes.shape[0] * b.codes.shape[2] <= 1200
            real, padded = real + float(b.lengths.sum()), padded + b.codes.shape[0] * b.codes.shape[2]
            seen += b.ids
            assert real_frame_share(b) == float(b.lengths.sum()) / (b.codes.shape[0] * b.codes.shape[2])
        return real / padded, seen[: -len(b.ids)]  # the last batch read is epoch 1's first

    padded_share, padded_ids = share_and_ids(0)
    bucketed_share, bucketed_ids = share_and_ids(2048)
    assert bucketed_share >= 0.95 > padded_share  # measured: 0.987 vs 0.846
    assert sorted(bucketed_ids) == sorted(padded_ids) == sorted(ids)  # every utterance once per epoch


def test_manifest_split_field_wins(tmp_path: Path) -> None:
    from codec2vec.pretrain.data import split_ids

    store = structured_store(tmp_path / "s", n=16, splits=True)
    train, dev = split_ids(store, 0.5)
    assert dev == ["utt000", "utt008"] and len(train) == 14


def test_too_small_batch_for_the_world_is_a_config_error(store_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)
    with pytest.raises(ConfigError, match="data.batch_frames"):
        CropLoader(store, store.ids(), batch_frames=150, crop_frames=100, world_size=2)


def test_store_crops_read_in_worker_processes_are_the_same_batches_and_resume(store_path: Path) -> None:
    from codec2vec.pretrain.data import CropLoader
    from codec2vec.pretrain.loaders import ProcessLoader, StoreSource, read_speed
    from codec2vec.store import TokenStore

    store = TokenStore.open(store_path)

    def plan() -> CropLoader:
        return CropLoader(store, store.ids(), batch_frames=400, crop_frames=100, seed=5)

    def workers() -> ProcessLoader:
        return ProcessLoader(plan(), source=StoreSource(store_root=str(store_path)), workers=2, pin_memory=False)

    inline, procs = plan(), workers()
    for _ in range(6):
        a, b = next(inline), next(procs)  # two processes deliver the plan's batches in order
        assert a.ids == b.ids and torch.equal(a.codes, b.codes) and torch.equal(a.seeds, b.seeds)
    state = procs.state_dict()  # the position of the last batch taken, however far the workers read ahead
    assert state == inline.state_dict()
    again = workers()
    again.load_state_dict(state)
    for _ in range(3):
        a, b = next(inline), next(again)
        assert a.ids == b.ids and torch.equal(a.codes, b.codes)
    ref, ahead = plan(), ProcessLoader(plan(), source=StoreSource(store_root=str(store_path)), prefetch=2)
    for _ in range(5):  # a thread reads ahead: the same batches, and the position of the last one taken
        a, b = next(ref), next(ahead)
        assert a.ids == b.ids and torch.equal(a.codes, b.codes) and ahead.state_dict() == ref.state_dict()
    fresh = ProcessLoader(plan(), source=StoreSource(store_root=str(store_path)), prefetch=2)
    next(fresh)
    fresh.load_state_dict(ahead.state_dict())  # stops the thread that had read ahead, then moves the plan
    for _ in range(3):
        a, b = next(ahead), next(fresh)
        assert a.ids == b.ids and torch.equal(a.codes, b.codes)
    ahead.close()
    del fresh  # dropped without close(): its thread stops too
    gc.collect()
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "codec2vec-prefetch"]
    position = inline.state_dict()
    assert read_speed(StoreSource(store_root=str(store_path)), inline) > 0
    assert inline.state_dict() == position  # timing the reads does not move the plan


def test_loader_workers_auto_is_none_on_cpu_and_what_the_gpu_needs_on_cuda() -> None:
    from codec2vec.pretrain.loaders import GPU_BASE_FRAMES_PER_S, loader_processes, resolve_workers

    def never() -> float:
        raise AssertionError("the CPU path must not time the loader")

    assert resolve_workers("auto", device_type="cpu", measure=never) == 0  # today's default on the CPU
    assert resolve_workers(3, device_type="cpu", measure=never) == 3  # an explicit number wins everywhere
    assert resolve_workers(0, device_type="cuda", measure=never) == 0
    # entropy-coded Lyra reads ~44k frames/s per process: a base model's 93k frames/s (H200) + 25% needs 3
    assert loader_processes(GPU_BASE_FRAMES_PER_S, 44_000) == 3
    assert loader_processes(GPU_BASE_FRAMES_PER_S, 1_900_000) == 1  # bit-packed DAC: one is plenty
    assert resolve_workers("auto", device_type="cuda", measure=lambda: 44_000.0, cpus=16) == 3
    assert resolve_workers("auto", device_type="cuda", measure=lambda: 10_000.0, cpus=16) == 13  # 1.25 x 98.5k / 10k
    assert resolve_workers("auto", device_type="cuda", measure=lambda: 10_000.0, cpus=16, local_processes=4) == 3
    assert resolve_workers("auto", device_type="cuda", measure=lambda: 10.0, cpus=2) == 1  # at least one
    assert (
        resolve_workers("auto", device_type="cuda", measure=lambda: 44_000.0, consumes_frames_per_s=300_000.0, cpus=64)
        == 9
    )  # a measured consumption replaces the reference
    cfg = load_config(None, ["data.workers=auto"])
    assert cfg.data.workers == "auto" and load_config(None, ["data.workers=2"]).data.workers == 2
    for bad in ("-1", "many"):
        with pytest.raises(ConfigError, match="data.workers"):
            load_config(None, [f"data.workers={bad}"])


def test_bench_loader_figure_uses_the_measured_gpu_step_or_the_reference() -> None:
    from codec2vec.bench.throughput import loader_needs
    from codec2vec.pretrain.loaders import GPU_BASE_FRAMES_PER_S

    reads = [{"source": "lyra-46", "frames_per_second": 44_000.0}, {"source": "flac", "frames_per_second": 1.0}]
    cpu = [{"model": "codec", "size": "base", "codec": "lyra-46", "device": "cpu", "compute_frames_per_second": 400.0}]
    here = loader_needs(reads, cpu)["lyra-46"]
    assert set(loader_needs(reads, cpu)) == {"lyra-46"}  # FLAC is the reference, not a store
    assert here["ratio"] == 110.0 and here["loader_processes_needed"] == 1
    assert here["gpu_consumes_frames_per_second"] == GPU_BASE_FRAMES_PER_S and here["gpu_loader_processes"] == 3
    assert here["gpu_consumption"].startswith("H200 reference")
    cuda = [{**cpu[0], "device": "cuda", "compute_frames_per_second": 200_000.0}]
    gpu = loader_needs(reads, cuda)["lyra-46"]
    assert gpu["gpu_consumption"].startswith("measured") and gpu["gpu_loader_processes"] == 6  # 1.25 x 200k / 44k


class _SlowLoader:
    """A test double: the run's real loader, 0.2 s slower per batch (a loader that cannot keep up)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.workers = inner, 0

    def __next__(self) -> object:
        time.sleep(0.2)
        return next(self.inner)  # type: ignore[call-overload]

    def state_dict(self) -> dict:
        return self.inner.state_dict()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_metrics_report_the_wait_for_data(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import codec2vec.pretrain.loop as train

    extra = ("train.steps=4", "train.eval_every=0", "train.ckpt_every=0", "targets=reconstruction")
    train.pretrain(tiny_config(store_path, tmp_path / "plain", *extra))
    real = train.make_loaders

    def slow(*a: object, **k: object) -> tuple[object, object]:
        loader, dev = real(*a, **k)  # type: ignore[arg-type]
        return _SlowLoader(loader), dev

    monkeypatch.setattr(train, "make_loaders", slow)
    train.pretrain(tiny_config(store_path, tmp_path / "slow", *extra))
    plain, slow = read_metrics(tmp_path / "plain")[0], read_metrics(tmp_path / "slow")[0]
    assert [r["loss"] for r in slow] == [r["loss"] for r in plain]  # the same batches, only later
    for p, s in zip(plain, slow):
        assert 0 <= p["data_wait_s"] < 0.2 <= s["data_wait_s"] <= s["step_s"]
        assert 0 <= p["data_wait_share"] < s["data_wait_share"] <= 1
        assert s["window_frames_per_s"] > 0 and p["step_s"] > 0


def test_figures_read_once_per_log_row_equal_figures_read_every_step(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import codec2vec.pretrain.loop as train

    extra = (
        "train.steps=6",
        "train.eval_every=0",
        "train.ckpt_every=0",
        "train.log_every=3",
        "train.accum_steps=2",
        "targets=reconstruction,online",
        "targets.unmasked_weight=0.5",  # the unmasked terms travel in the same vector
    )
    train.pretrain(tiny_config(store_path, tmp_path / "every", *extra))
    setup = train.setup

    def deferred(*a: object, **k: object) -> train.Run:
        run = setup(*a, **k)  # type: ignore[arg-type]
        run.sync_every_step = False  # as on CUDA: the step figures stay on the device until a log row
        return run

    monkeypatch.setattr(train, "setup", deferred)
    summary = train.pretrain(tiny_config(store_path, tmp_path / "deferred", *extra))
    every, late = read_metrics(tmp_path / "every")[0], read_metrics(tmp_path / "deferred")[0]
    assert [r["step"] for r in late] == [3, 6]
    for a, b in zip(every, late):
        keys = ("loss", "loss_reconstruction", "acc_reconstruction", "real_frame_share", "acc_online")
        for key in (*keys, "loss_online_unmasked"):
            assert a[key] == b[key], key
    assert summary["first_loss"] is not None and math.isfinite(summary["first_loss"])


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_is_verified_and_loads_the_encoder(store_path: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.checkpoint import CheckpointError, list_checkpoints, load_model
    from codec2vec.pretrain.loop import pretrain

    run = tmp_path / "run"
    cfg = tiny_config(store_path, run, "train.steps=10", "train.eval_every=0", "train.ckpt_every=5")
    summary = pretrain(cfg)
    assert summary["step"] == 10
    assert [p.name for p in list_checkpoints(run)] == ["step-00000005", "step-00000010"]
    assert (run / "config.yaml").is_file() and load_config(run / "config.yaml") == cfg
    encoder, meta = load_model(run)  # the run dir -> its newest checkpoint
    assert meta["step"] == 10 and meta["codec"]["num_codebooks"] == K and meta["config"]["model"]["dim"] == 64
    codes = torch.randint(0, V, (2, K, 30))
    layers, _ = encoder(codes, torch.tensor([30, 20]))
    assert len(layers) == 3 and layers[-1].shape == (2, 30, 64)
    # Resuming with a different model is refused, naming the key; freezing the teacher later is allowed.
    with pytest.raises(ConfigError, match="model.num_layers"):
        pretrain(tiny_config(store_path, run, "train.steps=12", "model.num_layers=3"))
    assert (
        pretrain(
            tiny_config(store_path, run, "train.steps=11", "train.eval_every=0", "targets.online.freeze_teacher_step=5")
        )["steps_run"]
        == 1
    )
    # A partial checkpoint (temporary name) is never picked up; a flipped byte is reported by file name.
    (run / "checkpoints" / ".tmp-step-00000015-1").mkdir()
    assert list_checkpoints(run)[-1].name == "step-00000011"
    weights = run / "checkpoints" / "step-00000011" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(run)


# --- training -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_run_learns_and_writes_metrics(tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    structured_store(tmp_path / "store", n=300)  # many 'speakers': memorising the training set does not pay
    run = tmp_path / "run"
    cfg = tiny_config(
        tmp_path / "store",
        run,
        "train.steps=60",
        "train.eval_every=30",
        "train.ckpt_every=60",
        "train.log_every=5",
        "data.dev_fraction=0.1",
    )
    summary = pretrain(cfg)
    train_rows, dev_rows = read_metrics(run)
    assert [r["step"] for r in train_rows] == list(range(5, 61, 5))
    assert [r["step"] for r in dev_rows] == [30, 60]
    for r in train_rows + dev_rows:
        assert {"step", "loss", "acc_reconstruction", "loss_reconstruction"} <= set(r)
    assert all(0 < r["lr"] <= 2e-3 and r["frames_per_s"] > 0 for r in train_rows[:-1])
    assert train_rows[-1]["loss"] < 0.92 * train_rows[0]["loss"]
    # Chance is 1/16 = 0.0625; the speaker levels are predictable from the unmasked context.
    assert dev_rows[-1]["acc_reconstruction"] > 0.1, dev_rows
    assert summary["dev"]["acc_reconstruction"] == dev_rows[-1]["acc_reconstruction"]


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(store_path: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    extra = ("train.steps=40", "train.ckpt_every=8", "train.eval_every=8", "targets=reconstruction,online")
    reference = tiny_config(store_path, tmp_path / "ref", *extra)  # dropout on: the RNG must resume too
    pretrain(reference)
    ref_rows, ref_dev = read_metrics(tmp_path / "ref")

    run = tmp_path / "killed"
    cfg = tiny_config(store_path, run, *extra)
    run.mkdir()
    save_config(cfg, tmp_path / "killed.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    first = run / "checkpoints" / "step-00000008" / "meta.json"
    code, err, _ = kill_at(["pretrain", str(tmp_path / "killed.yaml")], first.exists, timeout=240, env=env)
    assert code == -signal.SIGKILL, err[-2000:]  # killed mid-run, not finished
    done_before = max(r["step"] for r in read_metrics(run)[0])
    assert done_before < 40

    pretrain(cfg)  # the run dir has checkpoints: resume
    rows, dev = read_metrics(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]  # rows past the checkpoint were re-logged once
    for a, b in zip(rows, ref_rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), (a, b)
        assert a["acc_online"] == pytest.approx(b["acc_online"], abs=1e-6)
        for key in ("real_frame_share", "online_used_l0", "online_ppl_target_l1", "online_ppl_pred_l1"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (key, a, b)  # the figures resume exactly too
    assert [r["loss"] for r in dev] == pytest.approx([r["loss"] for r in ref_dev], rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(store_path: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    extra = (
        "train.steps=6",
        "train.ckpt_every=6",
        "train.eval_every=6",
        "targets=reconstruction,online",
        "model.dropout=0",
        "model.attention_dropout=0",
        "model.input_dropout=0",
        "model.layer_drop=0",
        "train.accum_steps=2",
        "data.row_multiple=2",  # the plan 2 processes share evenly, for one process too
    )
    single = tiny_config(store_path, tmp_path / "one", *extra)
    pretrain(single)
    cfg = tiny_config(store_path, tmp_path / "two", *extra)
    save_config(cfg, tmp_path / "two.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "codec2vec",
            "pretrain",
            str(tmp_path / "two.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in out.stderr
    (one, one_dev), (two, two_dev) = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, 7))
    for a, b in zip(one + one_dev, two + two_dev):
        for key in ("loss", "acc_reconstruction", "acc_online"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a, b)  # measured: ~1e-7
    for a, b in zip(one, two):  # codewords in use and perplexities are summed over the ranks
        for key in ("online_used_l0", "online_used_l1", "online_ppl_target_l0", "online_ppl_pred_l1"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, a, b)
    assert two[-1]["frames_per_s"] > 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_nodes_match_one_process(store_path: Path, tmp_path: Path) -> None:
    """Two torchrun agents as two nodes of one job (c10d rendezvous on 127.0.0.1, one process each, gloo), as
    `srun torchrun` starts them on a cluster: the run equals one process's."""
    from codec2vec.pretrain.loop import pretrain

    # data.row_multiple=2: the batch plan the two ranks share evenly, for the one process too
    extra = ("train.steps=4", "train.ckpt_every=4", "train.eval_every=4", "targets=reconstruction", "model.dropout=0",
             "model.attention_dropout=0", "model.input_dropout=0", "model.layer_drop=0",
             "data.row_multiple=2")  # fmt: skip
    pretrain(tiny_config(store_path, tmp_path / "one", *extra))
    save_config(tiny_config(store_path, tmp_path / "nodes", *extra), tmp_path / "nodes.yaml")
    port, env = _free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "c2v-nodes",
                "--rdzv-conf",
                f"is_host={int(node == 0)}",
                "--local-addr",
                "127.0.0.1",
                "-m",
                "codec2vec",
                "pretrain",
                str(tmp_path / "nodes.yaml"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for node in range(2)
    ]
    outs = [a.communicate(timeout=300) for a in agents]
    assert [a.returncode for a in agents] == [0, 0], [err[-3000:] for _, err in outs]
    assert any("2 process(es)" in err for _, err in outs)
    (one, one_dev), (two, two_dev) = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "nodes")
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, 5))
    for a, b in zip(one + one_dev, two + two_dev, strict=True):
        for key in ("loss", "acc_reconstruction"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a, b)


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main

    config = str(Path(__file__).resolve().parents[2] / "configs" / "lyra_tiny.yaml")
    assert main(["pretrain", config, f"data.store={tmp_path / 'none'}", f"run.dir={tmp_path / 'run'}"]) == 2
    assert "not a token store" in capsys.readouterr().err
    assert main(["pretrain", config, "train.steps=many"]) == 2
    err = capsys.readouterr().err
    assert "train.steps" in err and len(err.strip().splitlines()) == 1
