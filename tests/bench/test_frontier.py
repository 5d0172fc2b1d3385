"""`bench --frontier` (bench/frontier.py, bench/audio_stores.py, bench/frontier_report.py): stores measured as
`info` measures them, the same utterances and splits at every point, a verdict that names only differences
whose paired interval excludes 0, and the quick run end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import make_audio_store


def test_stores_kbps_is_info_accounting_and_every_store_holds_the_same_utterances(tmp_path: Path) -> None:
    from codec2vec.bench.frontier import FrontierOptions, _ids_of, _stores
    from codec2vec.store import TokenStore

    base = make_audio_store(tmp_path / "src", n=6)
    opts = FrontierOptions(levels=[4, 8], opus_kbps=[12.0, 24.0], opus_sample=2)
    stores = _stores(base, tmp_path / "out", opts, [4, 8])
    assert set(stores) == {"lyra-4", "lyra-8", "flac", "opus-12", "opus-24"}
    ids = sorted(TokenStore.open(base).ids())
    seconds = sum(float(TokenStore.open(base).entry(u)["seconds"]) for u in ids)
    for name, s in stores.items():
        assert _ids_of(s) == ids and s["utterances"] == len(ids), name  # same utterances at every point
        if s["kind"] == "tokens":  # a token store: exactly what `codec2vec info` says
            info = TokenStore.open(s["path"]).info()
            assert s["bytes"] == info["bytes"] and s["kbps"] == pytest.approx(info["kbps"]), name
            assert TokenStore.open(s["path"]).codec.num_codebooks == s["levels"]
        else:  # an audio store: every file under its folder (the audio files and the manifest), as info counts
            folder = Path(s["manifest"]).parent
            files = [p for p in folder.rglob("*") if p.is_file()]
            assert len(files) == len(ids) + 1 and (folder / "manifest.jsonl") in files
            total = sum(p.stat().st_size for p in files)
            assert s["bytes"] == total and s["kbps"] == pytest.approx(total * 8 / seconds / 1000), name
    assert all(s["read"]["cpu_per_audio_second"] >= 0 and s["read"]["audio_seconds"] > 0 for s in stores.values())
    assert stores["opus-12"]["kbps"] < stores["opus-24"]["kbps"] < stores["flac"]["kbps"]
    assert 0.0 <= stores["opus-24"]["level"] <= stores["opus-12"]["level"] <= 1.0  # higher level, fewer bits
    # the first 4 levels of the 8-level store are the 4-level store's codes, utterance by utterance
    a, b = TokenStore.open(stores["lyra-4"]["path"]), TokenStore.open(stores["lyra-8"]["path"])
    assert all(np.array_equal(a.read_numpy(u), b.read_numpy(u)[:4]) for u in ids)


def test_opus_level_meets_the_target_on_the_sample() -> None:
    from codec2vec.bench.audio_stores import opus_level

    rng = np.random.default_rng(0)
    t = np.arange(24_000) / 16_000
    clips = [(0.3 * np.sin(2 * np.pi * (180 + 40 * k) * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
             for k in range(2)]  # fmt: skip
    pick = opus_level(clips, 24.0)
    assert 0.0 < pick["level"] < 1.0 and abs(pick["kbps"] - 24.0) < 6.0
    floor = opus_level(clips, 0.5)  # below what Opus reaches: the lowest setting, honestly measured
    assert floor["level"] == 1.0 and floor["kbps"] > 0.5


def _d(a: str, b: str, metric: str, delta: float, ci: list[float], **kw: object) -> dict:
    lo, hi = ci
    lower = metric != "accuracy"
    if lo <= 0.0 <= hi:
        verdict = "no difference"
    else:
        verdict = f"{a if (delta < 0) == lower else b} better"
    return {"kind": "frontier", "a": a, "b": b, "metric": metric, "delta": delta, "ci": ci, "verdict": verdict} | kw


def test_verdict_names_only_differences_whose_interval_excludes_zero() -> None:
    from codec2vec.bench.frontier_report import verdict_paragraph

    paired = [
        _d("codec-46", "mel-flac", "per", 0.05, [0.02, 0.08], kbps=[9.4, 150.0], equal_storage=False),  # mel wins
        _d("codec-46", "mel-flac", "accuracy", 0.10, [-0.01, 0.2], kbps=[9.4, 150.0], equal_storage=False),  # covers 0
        _d("codec-46", "waveform-flac", "abx_error_across", -0.04, [-0.07, -0.01], kbps=[9.4, 150.0],
           equal_storage=False),  # codec wins
        _d("codec-30", "mel-opus-6", "per", -0.03, [-0.05, -0.005], kbps=[6.1, 7.9], equal_storage=True),  # codec
        _d("codec-30", "mel-opus-6", "abx_error_within", 0.02, [-0.03, 0.06], kbps=[6.1, 7.9], equal_storage=True),
        _d("codec-4", "mel-opus-24", "per", -0.2, [-0.3, -0.1], kbps=[1.0, 24.0], equal_storage=False),  # not equal
        _d("qd-off", "codec-46", "per", -0.02, [-0.04, -0.01]) | {"kind": "recipe"},  # qd-off wins
        _d("embed-scale", "codec-46", "accuracy", 0.3, [-0.1, 0.6]) | {"kind": "recipe"},  # covers 0
    ]  # fmt: skip
    points = [{"name": "codec-46", "kbps": 9.4}, {"name": "codec-4", "kbps": 1.0}, {"name": "mel-flac", "kbps": 150.0}]
    text = verdict_paragraph(paired, points)
    assert "mel-flac beats codec-46 on PER" in text
    assert "codec-46 beats waveform-flac on ABX across" in text
    assert "codec-30 beats mel-opus-6 on PER at 6.1 vs 7.9 kbps" in text
    assert "qd-off beats codec-46 on PER" in text
    for covered in ("SID", "ABX within", "embed-scale beats", "codec-4 beats"):
        assert covered not in text, covered  # an interval covering 0, or a pair not at equal storage
    assert "codec-30/mel-opus-6" in text  # names the pairs compared at equal storage
    assert "16x smaller than FLAC" in text and "tokens only" in text
    none = verdict_paragraph([x for x in paired if x["verdict"] == "no difference"], points)
    assert not re.search(r"\S+ beats \S+ on ", none) and "no input beats another" in none


@pytest.mark.slow
def test_bench_frontier_quick_end_to_end(tmp_path: Path, lyra_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from codec2vec.cli import main

    out = tmp_path / "f"
    assert main(["bench", "--frontier", "--quick", "--json", "--out", str(out)]) == 0
    r = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in r["points"]]
    assert names == ["codec-16", "codec-46", "mel-flac", "mel-opus-6"]
    assert [x["name"] for x in r["recipes"]] == ["qd-off", "levels-16"] and r["recipes"][1]["runs_of"] == "codec-16"
    for p in r["points"] + r["recipes"]:
        assert p["kbps"] > 0 and p["seeds"] == [0, 1] and p["cpu_seconds"] > 0 and p["data_seconds"] >= 0
        for m in ("per", "accuracy", "abx_error_across", "abx_error_within"):
            lo, hi = p["metrics"][m]["ci"]
            assert len(p["metrics"][m]["values"]) == 2 and lo <= hi
    kb = {p["name"]: p["kbps"] for p in r["points"]}
    assert kb["codec-16"] < kb["codec-46"] < kb["mel-flac"] and kb["mel-opus-6"] < kb["mel-flac"]
    runs = r["runs"]
    assert len(runs) == 5 * 2 and {x["steps"] for x in runs} == {2}  # levels-16 reuses codec-16's runs
    # the same utterances and the same probe splits at every point
    n_test = {(x["task"], x["metric"], x["n_test"]) for x in r["rows"]}
    assert len(n_test) == 4
    for x in runs:
        cfg = (Path(x["run_dir"]) / "config.yaml").read_text()
        assert ("audio: " + str(out / "stores" / "audio")) in cfg if x["model"] != "codec" else "lyra-" in cfg
    recipe_pairs = {(d["a"], d["metric"]) for d in r["paired"] if d["kind"] == "recipe"}
    assert {("qd-off", "per"), ("levels-16", "abx_error_across")} <= recipe_pairs
    assert all(d["b"] == "codec-46" for d in r["paired"] if d["kind"] == "recipe")
    assert r["verdict"].startswith("At equal compute") and "FLAC" in r["verdict"]
    assert (out / "frontier.png").stat().st_size > 5000 and json.loads((out / "frontier.json").read_text()) == r


def test_bench_frontier_refuses_an_unknown_recipe_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from codec2vec.cli import main

    out = tmp_path / "f"
    assert main(["bench", "--frontier", "--recipes", "qd-off,bogus", "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err and not out.exists()
