"""Probing is honest: metrics by edit distance on known strings, every head at chance on shuffled labels (and
well above it on real ones), the feature cache round trip (ABX: test_abx.py), and `codec2vec probe --json` on a real (Lyra-tokenized, briefly pre-trained) checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.features.cache import FeatureDir
from codec2vec.probe.metrics import bootstrap_ci, ctc_greedy, edit_distance, error_rate, per, wer
from codec2vec.probe.runner import probe_features
from conftest import synthetic_task

SPLITS = ("train", "dev", "test")
WORDS = ["ab", "cd", "ef", "bad", "fed", "ace"]


# --- metrics ----------------------------------------------------------------------------------------


def test_edit_distance_on_known_strings() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance(["AH", "B", "K"], ["AH", "B", "K"]) == 0
    assert edit_distance(["AH", "B", "K"], ["B", "K", "S"]) == 2  # one deletion, one insertion


def test_per_and_wer_are_corpus_level_edit_distance() -> None:
    # 1 substitution over 4 phones + 1 deletion over 2 phones = 2 / 6
    assert per([["a", "b", "c", "d"], ["e", "f"]], [["a", "x", "c", "d"], ["e"]]) == pytest.approx(2 / 6)
    # "the cat sat" -> "the bat sat down": 1 substitution + 1 insertion over 3 words; "hi" right.
    assert wer(["the cat sat", "hi"], ["the bat sat down", "hi"]) == pytest.approx(2 / 4)
    assert error_rate([[]], [["a"]]) == 1.0  # insertions against an empty reference still count


def test_ctc_greedy_merges_repeats_and_drops_blanks() -> None:
    import torch

    path = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 0]])  # blank 0
    logits = torch.nn.functional.one_hot(path, 3).float()  # (1, T, 3)
    assert ctc_greedy(logits, torch.tensor([9])) == [[1, 1, 2]]
    assert ctc_greedy(logits, torch.tensor([3])) == [[1]]


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = (rng.random(50) < 0.7).astype(float)
    large = (rng.random(2000) < 0.7).astype(float)
    lo, hi = bootstrap_ci(small)
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_ci(large)
    assert lo2 <= large.mean() <= hi2 and (hi2 - lo2) < (hi - lo) / 3
    assert bootstrap_ci(small) == bootstrap_ci(small)  # fixed seed


# --- heads on synthetic features: real labels learnable, shuffled labels at chance ---------------------


def _majority(rows: list[dict], key: str = "label") -> float:
    return Counter(r[key] for r in rows).most_common(1)[0][1] / len(rows)


@pytest.mark.parametrize("task", ["sid", "ks", "style"])
def test_pool_head_learns_real_labels_and_is_at_chance_on_shuffled(tmp_path: Path, task: str) -> None:
    fd, rows = synthetic_task(tmp_path / task, task, (160, 40, 200))
    real = probe_features(task, fdir=fd, rows=rows, max_epochs=30)
    assert real["value"] >= 0.95 and real["metric"] == "accuracy"
    assert real["layer_weights"][1] == max(real["layer_weights"])  # the informative layer wins
    shuffled = probe_features(task, fdir=fd, rows=rows, max_epochs=30, shuffle_labels=True)
    # A label-independent predictor scores at most the test majority rate (about 0.25 for 4 classes);
    # 0.10 is more than 3 binomial standard deviations at n = 200.
    assert shuffled["value"] <= _majority(rows["test"]) + 0.10
    assert shuffled["ci"][0] <= shuffled["value"] <= shuffled["ci"][1]


def test_slot_head_needs_every_slot_and_is_at_chance_on_shuffled(tmp_path: Path) -> None:
    fd, rows = synthetic_task(tmp_path / "ic", "ic", (200, 40, 200))
    real = probe_features("ic", fdir=fd, rows=rows, max_epochs=40)
    assert real["value"] >= 0.9
    shuffled = probe_features("ic", fdir=fd, rows=rows, max_epochs=30, shuffle_labels=True)
    chance = np.prod([_majority(rows["test"], k) for k in ("action", "object", "location")])  # about 1/64
    assert shuffled["value"] <= chance + 0.05


def _prior_per(rows: dict) -> float:
    """PER of a label-only guess: each test utterance transcribed as a random training transcript."""
    rng = np.random.default_rng(0)
    train = [r["phones"] for r in rows["train"]]
    refs = [r["phones"] for r in rows["test"]]
    return per(refs, [train[int(rng.integers(len(train)))] for _ in refs])


def test_ctc_phone_head_learns_and_is_at_chance_on_shuffled(tmp_path: Path) -> None:
    fd, rows = synthetic_task(tmp_path / "pr", "pr", (160, 40, 120))
    real = probe_features("pr", fdir=fd, rows=rows, max_epochs=30)
    assert real["metric"] == "per" and real["value"] <= 0.4
    shuffled = probe_features("pr", fdir=fd, rows=rows, max_epochs=30, shuffle_labels=True)
    # Chance for PR: no better than guessing a transcript from the label prior (about 0.84 here).
    assert shuffled["value"] >= _prior_per(rows) - 0.08
    assert shuffled["value"] > real["value"] + 0.4


@pytest.mark.slow
def test_ctc_lstm_character_head_learns_and_is_at_chance_on_shuffled(tmp_path: Path) -> None:
    fd, rows = synthetic_task(tmp_path / "asr", "asr", (120, 30, 60))
    real = probe_features("asr", fdir=fd, rows=rows, max_epochs=8)
    shuffled = probe_features("asr", fdir=fd, rows=rows, max_epochs=6, shuffle_labels=True)
    assert real["metric"] == "wer"
    assert shuffled["value"] >= 0.9  # no word is recognised from features once the labels are shuffled
    assert real["value"] <= 0.3


def test_per_layer_puts_the_information_where_it_is(tmp_path: Path) -> None:
    fd, rows = synthetic_task(tmp_path / "sid", "sid", (120, 30, 120))
    r = probe_features("sid", fdir=fd, rows=rows, max_epochs=20, per_layer=True)
    acc = [p["value"] for p in r["per_layer"]]
    assert [p["layer"] for p in r["per_layer"]] == [0, 1, 2]
    assert acc[1] >= 0.95 and max(acc[0], acc[2]) <= _majority(rows["test"]) + 0.15


def test_probe_is_deterministic(tmp_path: Path) -> None:
    fd, rows = synthetic_task(tmp_path / "pr", "pr", (60, 20, 30))
    a = probe_features("pr", fdir=fd, rows=rows, max_epochs=4)
    b = probe_features("pr", fdir=fd, rows=rows, max_epochs=4)
    assert a["value"] == b["value"] and a["layer_weights"] == b["layer_weights"]


# --- the feature cache ----------------------------------------------------------------------------------


def test_feature_dir_round_trip_reopen_and_refuse_other_upstream(tmp_path: Path) -> None:
    from codec2vec.common.errors import StoreError

    fd = FeatureDir.open_or_create(tmp_path / "f", key="k1", layers=[0, 2], dim=4, describe={"name": "x"})
    a = np.arange(3 * 2 * 4, dtype=np.float16).reshape(3, 2, 4)
    b = np.ones((5, 2, 4), dtype=np.float16)
    fd.add([("a", a), ("b", b)])
    fd.add([("c", a[:1])])
    again = FeatureDir.open_or_create(tmp_path / "f", key="k1", layers=[0, 2], dim=4, describe={"name": "x"})
    assert sorted(again.ids) == ["a", "b", "c"] and again.total_frames == 9
    np.testing.assert_array_equal(again.get("a"), a)
    np.testing.assert_array_equal(again.get("c"), a[:1])
    assert isinstance(again.get("b"), np.memmap) or isinstance(again.get("b").base, np.memmap)
    (tmp_path / "f" / "feats-000001.json").unlink()  # a shard whose index never landed is not there
    assert "c" not in FeatureDir.open_or_create(tmp_path / "f", key="k1", layers=[0, 2], dim=4, describe={})
    with pytest.raises(StoreError, match="not of this upstream"):
        FeatureDir.open_or_create(tmp_path / "f", key="other", layers=[0, 2], dim=4, describe={})


# --- utterance heads ------------------------------------------------------------------------------------


def test_pooled_features_are_centred_on_the_train_split_mean() -> None:
    from types import SimpleNamespace

    from codec2vec.probe.runner import center_pooled

    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.normal(size=(50, 3, 4)) * [1.0, 10.0, 0.1, 5.0] + 7.0).float()  # (N, L, D)
    dev = train[:10].clone() + 1.0
    splits = {"train": SimpleNamespace(pooled=train.clone()), "dev": SimpleNamespace(pooled=dev.clone())}
    frames = SimpleNamespace(pooled=None)  # a frame task's split is left alone
    center_pooled({**splits, "test": frames})  # type: ignore[arg-type]
    torch.testing.assert_close(splits["train"].pooled.mean(0), torch.zeros(3, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(splits["train"].pooled.std(0), train.std(0))  # scales kept
    torch.testing.assert_close(splits["dev"].pooled, dev - train.mean(0))  # the train mean, not dev's own
    assert frames.pooled is None


def _planted(
    root: Path, task: str, layers: list[int], *, noise: float = 10.0, seed: int = 0
) -> tuple[FeatureDir, dict]:
    """Layer 0 carries the labels (a class vector plus unit noise); the other layers are noise 10x larger
    around a large common offset. `layers` picks which layers the folder keeps."""
    rng = np.random.default_rng(seed)
    fd = FeatureDir.open_or_create(root, key="planted", layers=layers, dim=16, describe={})
    emb = rng.normal(size=(8, 16)) * 0.5
    rows: dict[str, list[dict]] = {}
    arrays = []
    for split, n in zip(SPLITS, (160, 40, 160)):
        rows[split] = []
        for i in range(n):
            uid, label = f"{split}{i:04d}", int(rng.integers(0, 8))
            t = int(rng.integers(10, 20))
            x = rng.normal(size=(t, 5, 16)) * noise + 3.0 * noise
            x[:, 0] = rng.normal(size=(t, 16)) + emb[label]
            arrays.append((uid, x[:, layers].astype(np.float16)))
            rows[split].append({"id": uid, "label": str(label)})
    fd.add(arrays)
    return fd, rows


def test_weighted_sum_matches_its_informative_layer_among_louder_noise_layers(tmp_path: Path) -> None:
    fd_all, rows = _planted(tmp_path / "all", "sid", [0, 1, 2, 3, 4])
    fd_one, same = _planted(tmp_path / "one", "sid", [0])  # the same seed: the same rows and layer 0
    assert same == rows
    mixed = probe_features("sid", fdir=fd_all, rows=rows, max_epochs=30, patience=30)
    alone = probe_features("sid", fdir=fd_one, rows=rows, max_epochs=30, patience=30)
    assert alone["value"] >= 0.9
    assert mixed["value"] >= alone["value"] - 0.02
    assert np.argmax(mixed["layer_weights"]) == 0 and mixed["layer_weights"][0] > 0.8


def test_superb_protocol_trains_with_s3prl_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codec2vec.common.errors import ConfigError
    from codec2vec.probe.tasks import TASKS, get_protocol, make_head

    sid, pr, asr = (get_protocol(TASKS[t], "superb") for t in ("sid", "pr", "asr"))
    assert (sid.optimizer, sid.lr, sid.decay, sid.mix_lr, sid.standardise) == ("adamw", 1e-4, False, None, False)
    assert (pr.optimizer, pr.lr) == ("adam", 1e-2) and asr.lr == 1e-4
    lstm = make_head(TASKS["asr"], num_layers=2, dim=8, vocabs=[list("ab")], hidden=asr.lstm_hidden).lstm
    assert lstm.hidden_size == 1024 and lstm.num_layers == 2 and lstm.bidirectional
    assert get_protocol(TASKS["sid"]).name == "ours" and get_protocol(TASKS["sid"]).lr == TASKS["sid"].lr
    with pytest.raises(ConfigError, match="--protocol nope"):
        get_protocol(TASKS["sid"], "nope")
    made = []
    real = torch.optim.AdamW

    def spy(groups, *a, **k):  # type: ignore[no-untyped-def]
        made.append([g["lr"] for g in groups])
        return real(groups, *a, **k)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    fd, rows = synthetic_task(tmp_path / "sid", "sid", (40, 10, 20))
    r = probe_features("sid", fdir=fd, rows=rows, max_epochs=2, protocol="superb")
    assert r["protocol"] == "superb" and made == [[1e-4, 1e-4]]  # head and layer weights at s3prl's rate


# --- the command line on a real checkpoint ---------------------------------------------------------------


@pytest.mark.slow
def test_probe_json_prints_one_object_with_references(tiny_run: dict, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "codec2vec", "probe", "sid", "--ckpt", str(tiny_run["run"])]
    cmd += ["--data", str(tiny_run["corpus"] / "sid"), "--json", "--max-epochs", "3", "--cache-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["task"] == "sid" and r["metric"] == "accuracy" and 0.0 <= r["value"] <= 1.0
    assert len(r["layer_weights"]) == 5 and sum(r["layer_weights"]) == pytest.approx(1.0, abs=1e-4)
    assert r["ci"][0] <= r["value"] <= r["ci"][1]
    assert [ref["model"] for ref in r["references"]] == ["codec", "random"]
    for ref in r["references"]:
        assert 0.0 <= ref["value"] <= 1.0 and len(ref["ci"]) == 2
        d = ref["paired"]  # the checkpoint minus the reference, paired over the same test items
        assert d["a"] == "pretrained" and d["b"] == ref["model"] and d["n_items"] == r["n_test"]
        assert d["delta"] == pytest.approx(r["value"] - ref["value"]) and d["verdict"]
    assert len(r["references"][0]["layer_weights"]) == 1  # the codec's embeddings: one layer
    # The features were cached: a second run extracts nothing and gives the same numbers.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout)["value"] == r["value"]


def test_probe_cli_names_an_unknown_task_or_reference_on_one_line(tmp_path: Path) -> None:
    from codec2vec.cli import main

    assert main(["probe", "nope", "--ckpt", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert main(["probe", "sid", "--ckpt", str(tmp_path), "--data", str(tmp_path), "--references", "mfcc"]) == 2


@pytest.mark.slow
def test_reference_sources_codec_embeddings_and_seeded_random_model(tiny_run: dict) -> None:
    import torch

    from codec2vec.features.sources import feature_source
    from codec2vec.store import TokenStore

    store = TokenStore.open(tiny_run["store"])
    uid = store.ids()[0]
    codes = store[uid][None]  # (1, K, T)
    lengths = torch.tensor([codes.shape[-1]])
    vectors = store.codebook_vectors()  # (K, V, D_codec)
    codec = feature_source("codec", tiny_run["run"])
    codec.prepare(vectors)
    (h,) = codec(codes, lengths)
    want = sum(vectors[k][codes[0, k]] for k in range(codes.shape[1]))  # (T, D_codec): the quantized latent
    torch.testing.assert_close(h[0], want, atol=1e-4, rtol=1e-4)
    outs = []
    for _ in range(2):
        src = feature_source("random", tiny_run["run"], seed=3)
        src.prepare(vectors)
        outs.append(src(codes, lengths))
    assert len(outs[0]) == 5 and all(torch.equal(a, b) for a, b in zip(*outs))
    trained = feature_source("pretrained", tiny_run["run"])
    trained.prepare(vectors)
    assert not torch.allclose(trained(codes, lengths)[-1], outs[0][-1])
    assert len({codec.key, src.key, trained.key}) == 3
