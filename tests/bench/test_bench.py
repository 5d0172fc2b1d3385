"""`codec2vec bench`: the JSON shape the README promises, on a small corpus of real audio files, and the order-0
entropy the storage rows are measured against."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import audio_config


def test_order0_entropy_of_a_store(tmp_path: Path) -> None:
    from codec2vec.bench.storage import _entropy_bits
    from codec2vec.codecs.base import CodecInfo, config_hash
    from codec2vec.store import TokenStore

    info = CodecInfo(name="lyra", sample_rate=16000, frame_rate=50.0, num_codebooks=2, codebook_size=16,
                     config={}, config_hash=config_hash({}))  # fmt: skip
    store = TokenStore.create(tmp_path / "s", info, torch.zeros(2, 16, 4))
    rng = np.random.default_rng(0)
    with store.writer() as w:
        for i in range(4):
            level0 = rng.permutation(np.repeat([3, 9], 50))  # 1 bit per frame
            level1 = np.full(100, 7)  # 0 bits
            w.add(f"u{i}", torch.from_numpy(np.stack([level0, level1])), seconds=2.0)
    assert _entropy_bits(TokenStore.open(tmp_path / "s")) == pytest.approx(400.0)


@pytest.mark.slow
def test_bench_quick_json(audio_store: Path, lyra_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from codec2vec.cli import main

    files = sorted((audio_store.parent / "audio").iterdir())[:4]
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--json", "--out", str(out), *map(str, files)]) == 0
    r = json.loads(capsys.readouterr().out)  # one JSON object, nothing else on stdout
    codecs = [s["codec"] for s in r["storage"]]
    assert codecs == ["lyra-16", "lyra-46", "flac", "pcm16"]
    for s in r["storage"]:
        assert s["kbps"] > 0 and s["ratio_to_flac"] > 0
    lyra = r["storage"][0]
    assert lyra["entropy_kbps"] <= 16 * 4 * 50 / 1000 + 1e-9 and lyra["over_entropy_codes"] > -0.01
    assert {(t["model"], t["size"]) for t in r["throughput"]} == {
        ("codec", "tiny"),
        ("waveform", "tiny"),
        ("mel", "tiny"),
    }
    for t in r["throughput"]:
        assert t["audio_seconds_per_second"] > 0 and t["steps_per_second"] > 0 and 0 < t["frontend_share"]
        assert math.isclose(t["batch_audio_seconds"], r["throughput"][0]["batch_audio_seconds"])  # same batch
    assert {x["baseline"] for x in r["ratios"]} == {"waveform", "mel"}
    assert {"lyra-16", "lyra-46", "flac"} <= {x["source"] for x in r["reads"]}
    assert {x["coding"] for x in r["reads"]} == {"packed", "rans", "flac"}  # every coding a store writes
    assert r["loader"]["lyra-46"]["loader_processes_needed"] >= 1
    assert (out / "bench.png").stat().st_size > 1000 and json.loads((out / "bench.json").read_text())["storage"]


def test_reads_every_coding_against_flac(tmp_path: Path) -> None:
    """`measure_reads`: one row per store as written, the recoded store in every other coding (same codes), and
    FLAC of the same audio, at both crop lengths; a coding's reads return its codes."""
    import soundfile as sf

    from codec2vec.bench.reads import measure_reads, recode
    from conftest import fake_info, store_from_codes

    rng = np.random.default_rng(0)
    items, flac = [], {}
    for i in range(6):
        t = int(rng.integers(60, 300))
        items.append((f"u{i}", rng.choice(16, size=(8, t), p=0.7 ** np.arange(16) / (0.7 ** np.arange(16)).sum()), {}))
        flac[f"u{i}"] = str(tmp_path / f"u{i}.flac")
        sf.write(flac[f"u{i}"], rng.uniform(-0.1, 0.1, t * 320).astype("float32"), 16000, subtype="PCM_16")
    store = store_from_codes(tmp_path / "s", fake_info(8, 16), torch.randn(8, 16, 4), items)
    rows = measure_reads({"lyra-30": store}, flac, crop_frames=120, other_crop=50, reads=20, budget_s=0.05)
    assert [(r["source"], r["coding"]) for r in rows] == [
        ("lyra-30", "rans"), ("lyra-30 packed", "packed"), ("flac", "flac")
    ]  # fmt: skip
    for r in rows:
        assert r["crop_frames"] == 120 and r["frames_per_second"] > 0 and r["at_50_frames"]["ratio_to_flac"] > 0
    assert rows[-1]["ratio_to_flac"] == 1.0
    for coding in ("packed", "rans"):
        copy = recode(store, coding, tmp_path / coding)
        assert all(np.array_equal(copy.read_numpy(u, 5, 55), c[:, 5:55]) for u, c, _ in items)


# --- equal-compute quality (`bench --quality`, bench/quality.py) ---------------------------------------------


def _fake_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_per_step: dict[str, float]) -> tuple[list, list]:
    """Jobs whose 'pre-training' records each chunk and costs `cpu_per_step[name]` CPU seconds a step."""
    import codec2vec.pretrain.loop
    from codec2vec.bench.schedule import Job

    calls: list[tuple[str, int, bool]] = []
    steps_at: dict[str, int] = {}

    def fake_pretrain(cfg: dict) -> dict:
        name, target = cfg["name"], cfg["steps"]
        done = target - steps_at.get(name, 0)
        steps_at[name] = target
        calls.append((name, target, cfg["final"]))
        return {"step": target, "cpu_seconds": done * cpu_per_step[name], "train_seconds": 0.1, "frames_seen": 500.0 * done,
                "first_loss": 5.0, "last": {}, "dev": {}, "encoder_params": 1}  # fmt: skip

    monkeypatch.setattr(codec2vec.pretrain.loop, "pretrain", fake_pretrain)
    jobs = [Job(n, tmp_path / n, lambda steps, final, n=n: {"name": n, "steps": steps, "final": final})
            for n in cpu_per_step]  # fmt: skip
    for j in jobs:
        j.run_dir.mkdir(parents=True)
    return jobs, calls


def test_equal_step_budgets_give_identical_step_counts_interleaved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--budget steps: every run makes exactly the budget's steps, in round-robin chunks (never one run after
    the other), whatever a step costs; the last chunk of each run is marked final."""
    from codec2vec.bench.schedule import run_interleaved

    jobs, calls = _fake_jobs(tmp_path, monkeypatch, {"codec": 0.1, "waveform": 2.0, "mel": 0.1})
    out = run_interleaved(jobs, kind="steps", amount=7, chunk=3)
    assert [r["steps"] for r in out] == [7, 7, 7] and [r["chunks"] for r in out] == [3, 3, 3]
    assert [c[0] for c in calls] == ["codec", "waveform", "mel"] * 3  # interleaved
    assert [c[1] for c in calls] == [3, 3, 3, 6, 6, 6, 7, 7, 7] and [c[2] for c in calls] == [False] * 6 + [True] * 3
    assert [r["cpu_seconds"] for r in out] == pytest.approx([0.7, 14.0, 0.7])
    assert run_interleaved(jobs, kind="steps", amount=7, chunk=3)[0]["steps"] == 7 and len(calls) == 9  # resumed: done


def test_cpu_budgets_give_each_run_the_same_cpu_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--budget cpu: each run stops once its own training loop has used the budget's CPU seconds, so a run with
    cheaper steps makes more of them; no run overshoots by more than one step."""
    from codec2vec.bench.schedule import run_interleaved

    jobs, _ = _fake_jobs(tmp_path, monkeypatch, {"codec": 0.5, "waveform": 2.0})
    out = run_interleaved(jobs, kind="cpu", amount=20.0, chunk=5)
    assert [r["steps"] for r in out] == [40, 10]
    for r, per_step in zip(out, (0.5, 2.0)):
        assert 20.0 <= r["cpu_seconds"] < 20.0 + per_step + 1e-9


def test_max_seconds_stops_the_loop_and_checkpoints_there(audio_store: Path, tmp_path: Path) -> None:

    from codec2vec.pretrain.checkpoint import latest_checkpoint, read_meta
    from codec2vec.pretrain.loop import pretrain

    run = tmp_path / "run"
    extra = ("train.steps=100000", "train.max_seconds=1.5", "train.eval_every=0", "train.ckpt_every=0")
    summary = pretrain(audio_config(audio_store, run, "mel", *extra))
    assert summary["stopped_at_max_seconds"] and 0 < summary["step"] < 100000
    assert summary["train_seconds"] >= 1.5 and summary["frames_seen"] > 0
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and read_meta(ckpt)["step"] == summary["step"]  # saved where it stopped
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["split"] == "dev" and rows[-1]["step"] == summary["step"]  # evaluated there too
    again = pretrain(audio_config(audio_store, run, "mel", *extra))  # resumes, with a budget of its own
    assert again["stopped_at_max_seconds"] and again["step"] > summary["step"]


def test_baseline_probe_features_come_from_audio(audio_store: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from codec2vec.pretrain.checkpoint import load_model
    from codec2vec.pretrain.loop import pretrain
    from codec2vec.probe import cached_features, feature_source
    from codec2vec.store import TokenStore

    run = tmp_path / "run"
    pretrain(audio_config(audio_store, run, "waveform", "train.steps=1"))
    store = TokenStore.open(audio_store)
    ids = store.ids()[:6]
    rows = [{"id": u, "path": store.entry(u)["source"], "label": f"s{i % 2}"} for i, u in enumerate(ids)]
    for name in ("a", "b"):  # two task folders over the same clips (as the demo's PR and SID)
        for split, part in (("train", rows[:3]), ("dev", rows[3:4]), ("test", rows[4:])):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    source = feature_source("pretrained", run)
    fdir = cached_features(source, tmp_path / "a", cache_dir=tmp_path / "cache")
    encoder, _ = load_model(run)
    for u in ids:
        wav, _ = sf.read(store.entry(u)["source"], dtype="float32")
        frames = -(-len(wav) // 320)
        layers, _ = encoder(torch.from_numpy(wav)[None], torch.tensor([frames]))  # the clip alone
        got = fdir.get(u).astype(np.float32)  # (T, L + 1, D), batched and padded with the other clips
        assert got.shape == (frames, len(layers), layers[0].shape[-1]) and frames == store.num_frames(u)
        want = torch.stack(layers, dim=2)[0].detach().numpy()
        assert np.abs(got - want).max() < 2e-2 * max(1.0, np.abs(want).max())
    assert cached_features(source, tmp_path / "b", cache_dir=tmp_path / "cache").root == fdir.root  # shared


@pytest.mark.slow
def test_bench_quality_quick_json(tmp_path: Path, lyra_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from codec2vec.cli import main

    out = tmp_path / "q"
    assert main(["bench", "--quality", "--quick", "--json", "--out", str(out)]) == 0
    r = json.loads(capsys.readouterr().out)  # one JSON object, nothing else on stdout
    rows = r["quality"]
    assert r["budget"]["kind"] == "steps" and r["budget"]["amount"] == 2 and r["seeds"] == 2
    assert {(x["model"], x["recipe"], x["seed"]) for x in rows} == {
        (m, rc, s) for m in ("codec", "waveform", "mel") for rc in ("own", "same-targets") for s in (0, 1)
    }  # per-seed rows of every model under its own recipe and the same-targets control
    assert {(x["task"], x["metric"]) for x in rows} == {
        ("pr", "per"), ("sid", "accuracy"), ("abx", "abx_error_across"), ("abx", "abx_error_within")
    }  # fmt: skip
    runs = {x["run"]: x for x in r["runs"]}
    assert len(runs) == 12 and {x["steps"] for x in runs.values()} == {2}  # equal optimizer steps, every run
    assert all(x["chunks"] == 2 and x["cpu_seconds"] > 0 for x in runs.values())  # interleaved in 2 chunks
    assert {x["frontend"] for x in runs.values()} == {"codec", "waveform", "melhubert"}
    own = {x["model"]: x["kmeans_source"] for x in runs.values() if x["recipe"] == "own"}
    assert own == {"codec": "codec", "waveform": "mfcc", "mel": "fbank"}
    assert {x["kmeans_source"] for x in runs.values() if x["recipe"] == "same-targets"} == {"mfcc"}
    for x in rows:
        lo, hi = x["ci"]
        top = float("inf") if x["metric"] == "per" else 1.0  # PER counts insertions: an untrained head can pass 1
        assert 0.0 <= x["value"] <= top and lo - 1e-9 <= x["value"] <= hi + 1e-9, x
    assert len(r["summary"]) == 3 * 2 * 4 and all(len(s["values"]) == 2 for s in r["summary"])
    pairs = {(d["recipe"], d["metric"], d["a"], d["b"]) for d in r["paired"]}
    for recipe in ("own", "same-targets"):
        for metric in ("per", "accuracy", "abx_error_across", "abx_error_within"):
            assert {
                (recipe, metric, a, b) for a, b in (("codec", "mel"), ("codec", "waveform"), ("mel", "waveform"))
            } <= pairs
    for d in r["paired"]:
        assert d["n_seeds"] == 2 and len(d["ci"]) == 2 and d["verdict"]
    assert len(r["verdicts"]) == 2 * 4 and all(v.startswith(("own ", "same-targets ")) for v in r["verdicts"])
    assert any("test items" in w for w in r["warnings"])  # the quick corpus' test sets are under 30 items
    assert (out / "quality.png").stat().st_size > 1000 and json.loads((out / "quality.json").read_text()) == r
    # A rerun finds every stage done and reports the same figures.
    assert main(["bench", "--quality", "--quick", "--json", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == rows


def test_bench_quality_refuses_a_folder_that_is_no_demo_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from codec2vec.cli import main

    assert main(["bench", "--quality", "--corpus", str(tmp_path), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a demo folder" in err and str(tmp_path / "tasks") in err
    assert main(["bench", "--quality", "--budget", "cpu", "--budget-minutes", "0", "--out", str(tmp_path / "q")]) == 2
    assert "--budget-minutes" in capsys.readouterr().err
    assert main(["bench", "--quality", "--budget-steps", "0", "--out", str(tmp_path / "q")]) == 2
    assert "--budget-steps" in capsys.readouterr().err
