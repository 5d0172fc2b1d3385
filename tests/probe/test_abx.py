"""ABX as ZeroSpeech computes it: the same error as zerospeech-libriabx2 (the reference implementation) on the same
item file and `.npy` features, within and across speakers; Libri-light item files; the reference's frames, DTW
path and zero vectors; intervals that resample speakers; no test item is an error."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from codec2vec.common.errors import ConfigError
from codec2vec.corpora.items import Item, items_from_align, read_items, write_items
from codec2vec.probe.abx import _speaker_mean, dtw_batch, frame_span, score_layer
from conftest import abx_corpus


def _reference(root: Path, item_file: Path) -> dict[str, float]:
    """zerospeech-libriabx2's within-context ABX (its CLI defaults: groups of 10, 5 X speakers) at 20 ms frames."""
    stub = False
    try:
        import torchaudio  # noqa: F401  (the reference imports it for its CPC models only)
    except (ImportError, OSError):  # a torchaudio wheel built for another torch: the ABX code never calls it
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
        stub = True
    try:
        from zrc_abx2.eval_ABX import EvalABX, EvalArgs
    finally:  # the stand-in must not outlive the import: other libraries (lhotse) probe for torchaudio
        if stub:
            for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
                del sys.modules[name]

    args = EvalArgs(path_data=str(root), path_item_file=str(item_file), feature_size=0.02, context_mode="within")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = EvalABX().eval_abx(args)
    return {r["abx-s-condition"]: float(r["score"]) for r in res}


@pytest.mark.parametrize("seed,kind", [(0, "item"), (1, "item"), (2, "phoneme.item")])
def test_abx_agrees_with_zerospeech_libriabx2(tmp_path: Path, seed: int, kind: str) -> None:
    abx_corpus(tmp_path, seed=seed)
    item_file = tmp_path / f"test.{kind}"
    ours = score_layer(read_items(item_file), lambda u: np.load(tmp_path / f"{u}.npy"))
    ref = _reference(tmp_path, item_file)
    assert ours["cells"] > 50
    assert ours["within"] == pytest.approx(ref["within"], abs=0.002)
    assert ours["across"] == pytest.approx(ref["across"], abs=0.002)


def test_abx_is_low_on_phone_features_and_chance_on_noise(tmp_path: Path) -> None:
    for informative, check in [(8.0, lambda v: v < 0.1), (0.0, lambda v: abs(v - 0.5) < 0.1)]:
        root = tmp_path / str(informative)
        abx_corpus(root, seed=3, informative=informative)
        r = score_layer(read_items(root / "test.item"), lambda u, root=root: np.load(root / f"{u}.npy"))
        assert check(r["within"]) and check(r["across"]), r
        assert r["ci_within"][0] <= r["within"] <= r["ci_within"][1]
        assert r["ci_across"][0] <= r["across"] <= r["ci_across"][1]


def test_item_files_are_libri_light_triphones_or_phonemes(tmp_path: Path) -> None:
    align = ["sil", "sil", "a", "a", "a", "b", "b", "c", "c", "c", "sil"]
    rows = [{"id": "u", "speaker": "spk 1", "align": align}]
    tri = items_from_align(rows)
    assert tri == [Item("u", 0.0, 0.14, "a", "sil", "b", "spk_1"), Item("u", 0.04, 0.2, "b", "a", "c", "spk_1"),
                   Item("u", 0.1, 0.22, "c", "b", "sil", "spk_1")]  # fmt: skip
    assert items_from_align(rows, kind="phoneme")[1] == Item("u", 0.1, 0.14, "b", "a", "c", "spk_1")
    write_items(tmp_path / "t.item", tri)
    lines = (tmp_path / "t.item").read_text().splitlines()
    assert lines[0] == "#file onset offset #phone prev-phone next-phone speaker"
    assert lines[1] == "u 0.0000 0.1400 a sil b spk_1"
    assert read_items(tmp_path / "t.item") == tri
    (tmp_path / "bad.item").write_text(lines[0] + "\nu 0.1 0.2 a b\n")
    with pytest.raises(ConfigError, match=r"bad.item:2: not an item line"):
        read_items(tmp_path / "bad.item")


def test_items_take_the_reference_frames() -> None:
    # frames [ceil(50 on - 0.5), floor(50 off - 0.5)): Libri-light's rule at 20 ms
    assert frame_span(0.0, 0.14, 100) == (0, 6)
    assert frame_span(0.04, 0.2, 100) == (2, 9)
    assert frame_span(0.04, 0.2, 5) == (2, 5)  # cut at the utterance's end


def test_dtw_is_the_reference_normalised_cost() -> None:
    d = np.ones((1, 3, 6), np.float32)
    for i, j in [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]:
        d[0, i, j] = 0.0  # a path of zeros: the 3 frames, each repeated twice
    assert dtw_batch(d, np.array([3]), np.array([6]))[0] == pytest.approx(0.0)
    assert dtw_batch(np.full((1, 2, 2), 0.5, np.float32), np.array([2]), np.array([2]))[0] == pytest.approx(0.5)
    # a 1 x 3 pair: cost 0.3 + 0.6 + 0.9 over a path of 3 frames
    assert dtw_batch(np.array([[[0.3, 0.6, 0.9]]], np.float32), np.array([1]), np.array([3]))[0] == pytest.approx(0.6)


def test_dtw_equals_the_reference_dtw_with_ties() -> None:
    import libri_light_dtw  # zerospeech-libriabx2's compiled DTW

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = (int(v) for v in rng.integers(1, 9, 2))
        d = (rng.integers(0, 4, (n, m)) / 4).astype(np.float32)  # coarse values: many ties between paths
        want = libri_light_dtw._dtw(n, m, d, True)
        assert dtw_batch(d[None], np.array([n]), np.array([m]))[0] == np.float32(want)


def test_zero_vectors_are_at_the_maximal_distance() -> None:
    # X and A zero vectors, B a real one: the reference puts a zero vector at distance 0 from another zero vector
    # and 1 (the maximum) from any other, so X is closer to A: no error (at distance 0.5 from both: a tie, 0.5)
    feats = {"x": np.zeros((3, 4), np.float32), "a": np.zeros((3, 4), np.float32), "b": np.ones((3, 4), np.float32)}
    items = [Item(u, 0.0, 0.07, p, "l", "r", "s") for u, p in [("x", "a"), ("a", "a"), ("b", "b")]]
    assert score_layer(items, feats.get)["within"] == 0.0


def test_abx_interval_resamples_speakers() -> None:
    m = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, np.nan]])  # (speakers, phone pairs); NaN: the speaker lacks it
    assert _speaker_mean(m, np.ones((1, 3)))[0] == pytest.approx((0.5 + 0.5) / 2)
    assert _speaker_mean(m, np.array([[2.0, 0.0, 1.0]]))[0] == pytest.approx(((2 * 0.0 + 0.5) / 3 + 0.0) / 2)
    assert _speaker_mean(m, np.array([[0.0, 0.0, 3.0]]))[0] == pytest.approx(0.5)  # the pair it lacks is left out


def test_probe_abx_without_a_test_item_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main

    data = tmp_path / "pr"
    data.mkdir()
    for split in ("train", "dev", "test"):
        (data / f"{split}.jsonl").write_text(
            json.dumps({"id": "u", "path": "u.wav", "seconds": 1.0, "split": split}) + "\n"
        )
    assert main(["probe", "abx", "--ckpt", str(tmp_path / "none"), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test.item: no ABX test item" in err[0]


@pytest.mark.slow
def test_extract_npy_and_probe_abx_layer_agree_with_the_reference(tiny_run: dict, tmp_path: Path) -> None:
    import subprocess

    from codec2vec.store import TokenStore

    run, store, pr = str(tiny_run["run"]), str(tiny_run["store"]), tiny_run["corpus"] / "pr"
    assert (pr / "test.item").is_file() and (pr / "test.phoneme.item").is_file()  # synth writes both kinds
    out = tmp_path / "npy"
    cmd = [sys.executable, "-m", "codec2vec", "extract", run, store, "--out", str(out), "--format", "npy"]
    done = subprocess.run([*cmd, "--layers", "2", "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ids = TokenStore.open(store).ids()
    arrays = [np.load(out / f"{uid}.npy") for uid in ids]
    assert all(a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == 128 for a in arrays)
    two = subprocess.run([*cmd[:-1], "npy", "--layers", "1", "2"], capture_output=True, text=True, timeout=600)
    assert two.returncode == 2 and "one layer" in two.stderr
    probe = [sys.executable, "-m", "codec2vec", "probe", "abx", "--ckpt", run, "--data", str(pr), "--store", store]
    probe += ["--layer", "2", "--references", "", "--json", "--cache-dir", str(tmp_path / "cache")]
    got = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr
    ours = json.loads(got.stdout)
    assert ours["layer"] == 2 and ours["items"] == "triphone" and "per_layer" not in ours
    test_speakers = {json.loads(line)["speaker"] for line in (pr / "test.jsonl").read_text().splitlines()}
    assert 1 <= ours["n_speakers"] <= len(test_speakers) < 10  # speakers with a scored cell: the bootstrap's unit
    assert f"only {ours['n_speakers']} test speakers" in ours["warnings"][0]
    # the probe's scorer on its float16 cache = the scorer on the exported arrays (the tiny test split has
    # no across-speaker cell); the reference on every clip's items, where both kinds of cell exist
    mine = score_layer(read_items(pr / "test.item"), lambda u: np.load(out / f"{u}.npy"))
    assert ours["within"] == pytest.approx(mine["within"], abs=1e-6)
    rows = [json.loads(line) for line in (tiny_run["corpus"] / "all.jsonl").read_text().splitlines()]
    write_items(tmp_path / "all.item", items_from_align(rows))
    mine = score_layer(read_items(tmp_path / "all.item"), lambda u: np.load(out / f"{u}.npy"))
    ref = _reference(out, tmp_path / "all.item")
    assert mine["within"] == pytest.approx(ref["within"], abs=0.002)
    assert mine["across"] == pytest.approx(ref["across"], abs=0.002)


def test_probe_abx_refuses_the_superb_protocol_and_warns_on_few_speakers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ABX has no head to train: `--protocol superb` is refused on one line, not ignored. Its intervals resample
    speakers, so the small-test warning counts speakers, not utterances."""
    from codec2vec.cli import main
    from codec2vec.probe.paired import abx_warnings

    assert main(["probe", "abx", "--ckpt", str(tmp_path), "--data", str(tmp_path), "--protocol", "superb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--protocol superb" in err[0]
    assert abx_warnings({"n_speakers": 12, "n_test": 5}) == []
    (warning,) = abx_warnings({"n_speakers": 6, "n_test": 500})
    assert "only 6 test speakers (< 10)" in warning


def test_write_task_writes_item_files_for_aligned_phone_tasks(tmp_path: Path) -> None:
    from codec2vec.corpora.manifest import write_task

    align = ["sil", "a", "a", "b", "c", "c", "sil"]
    rows = [{"id": f"u{s}", "path": "x.wav", "seconds": 1.0, "split": s, "speaker": "k", "align": align}
            for s in ("train", "dev", "test")]  # fmt: skip
    meta = write_task(tmp_path / "pr", "pr", rows, frame_rate=50.0)
    assert meta["abx_items"] == ["dev.item", "dev.phoneme.item", "test.item", "test.phoneme.item"]
    assert read_items(tmp_path / "pr" / "test.item") == items_from_align(rows[2:])
    assert read_items(tmp_path / "pr" / "dev.phoneme.item") == items_from_align(rows[1:2], kind="phoneme")
    assert write_task(tmp_path / "asr", "asr", rows)["abx_items"] == []
    assert not list((tmp_path / "asr").glob("*.item"))
    no_align = [{k: v for k, v in r.items() if k != "align"} for r in rows]
    assert write_task(tmp_path / "pr2", "pr", no_align)["abx_items"] == []  # e.g. LibriSpeech: no alignments


def test_abx_task_folder_needs_no_train_split(tmp_path: Path) -> None:
    """ABX reads dev and test only: a folder without `train.jsonl` passes the task-folder check (PR does not)."""
    from codec2vec.probe.tasks import check_task_folder

    for split in ("dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"id": "u", "path": "u.wav", "phones": ["a"]}) + "\n")
    check_task_folder("abx", tmp_path)
    with pytest.raises(ConfigError, match="train.jsonl: missing"):
        check_task_folder("pr", tmp_path)
