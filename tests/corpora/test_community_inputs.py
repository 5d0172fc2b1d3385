"""`tokenize` reads the community's corpus lists (Kaldi data dirs, fairseq/HuBERT .tsv, lhotse manifests), and every
input mistake is a one-line error (exit 2) before a store, run or output folder exists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.cli import main
from codec2vec.common.errors import AudioError
from codec2vec.corpora.audio import scan_sources
from codec2vec.corpora.manifest import write_task
from codec2vec.store import TokenStore
from conftest import make_store

ROOT = Path(__file__).resolve().parents[2]


def _clips(root: Path, speakers: int = 2, per_speaker: int = 3) -> list[tuple[str, Path, str]]:
    """(utterance id, wav file, speaker) of tiny noise clips, 0.3 s at 16 kHz."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    out = []
    for s in range(speakers):
        for i in range(per_speaker):
            uid = f"spk{s}-utt{i}"
            path = root / "wav" / f"{uid}.wav"
            sf.write(path, (0.1 * rng.standard_normal(4800)).astype(np.float32), 16000)
            out.append((uid, path, f"spk{s}"))
    return out


def _kaldi_dir(root: Path, clips: list[tuple[str, Path, str]], *, piped_line: int | None = None) -> Path:
    d = root / "data" / "train"
    d.mkdir(parents=True)
    lines = [f"{uid} {path}" for uid, path, _ in clips]
    if piped_line is not None:
        lines[piped_line - 1] = f"{clips[piped_line - 1][0]} sox {clips[piped_line - 1][1]} -t wav - |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text("".join(f"{uid} {spk}\n" for uid, _, spk in clips))
    (d / "text").write_text("".join(f"{uid} HELLO WORLD {n}\n" for n, (uid, _, _) in enumerate(clips)))
    return d


def _tokenize(*args: str) -> int:
    return main(["tokenize", *args, "--json"])


def test_kaldi_data_dir_carries_speaker_and_text(tmp_path: Path, lyra_dir: Path, capsys) -> None:
    clips = _clips(tmp_path)
    d = _kaldi_dir(tmp_path, clips)
    assert _tokenize(str(d), "--out", str(tmp_path / "store")) == 0
    store = TokenStore.open(tmp_path / "store")
    assert sorted(store.ids()) == sorted(uid for uid, _, _ in clips)
    extra = store.entry("spk1-utt2")["extra"]
    assert extra["speaker"] == "spk1" and extra["text"] == "HELLO WORLD 5"
    # wav.scp named directly reads the same folder
    assert [i.id for i in scan_sources([d / "wav.scp"])] == [uid for uid, _, _ in clips]


def test_piped_wav_scp_is_refused_naming_the_line(tmp_path: Path, capsys) -> None:
    d = _kaldi_dir(tmp_path, _clips(tmp_path), piped_line=2)
    assert _tokenize(str(d), "--out", str(tmp_path / "store")) == 2
    err = capsys.readouterr().err
    assert f"{d / 'wav.scp'}:2: a piped command" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_kaldi_segments_are_refused(tmp_path: Path) -> None:
    d = _kaldi_dir(tmp_path, _clips(tmp_path))
    (d / "segments").write_text("spk0-utt0 rec0 0.0 0.2\n")
    with pytest.raises(AudioError, match="segments: utterances cut from longer recordings"):
        scan_sources([d])


def test_fairseq_tsv(tmp_path: Path, lyra_dir: Path) -> None:
    clips = _clips(tmp_path)
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{tmp_path / 'wav'}\n" + "".join(f"{p.name}\t4800\n" for _, p, _ in clips))
    items = scan_sources([tsv])
    assert [(i.id, i.path) for i in items] == [(p.stem, str(p)) for _, p, _ in clips]
    assert _tokenize(str(tsv), "--out", str(tmp_path / "store")) == 0
    assert sorted(TokenStore.open(tmp_path / "store").ids()) == sorted(p.stem for _, p, _ in clips)
    # a header-row .tsv (ours) still reads as before
    (tmp_path / "ours.tsv").write_text("id\tpath\n" + "".join(f"x{n}\t{p}\n" for n, (_, p, _) in enumerate(clips)))
    assert [i.id for i in scan_sources([tmp_path / "ours.tsv"])] == [f"x{n}" for n in range(len(clips))]
    # so does a one-column .tsv with a `path` header (no tab on its first line, but not fairseq's root line)
    (tmp_path / "paths.tsv").write_text("path\n" + "".join(f"{p}\n" for _, p, _ in clips))
    assert [i.path for i in scan_sources([tmp_path / "paths.tsv"])] == [str(p) for _, p, _ in clips]


def test_fairseq_tsv_bad_row_names_the_line(tmp_path: Path) -> None:
    clips = _clips(tmp_path)
    (tmp_path / "train.tsv").write_text(f"{tmp_path / 'wav'}\n{clips[0][1].name}\t4800\n{clips[1][1].name}\n")
    with pytest.raises(AudioError, match=r"train.tsv:3: expected '<path><TAB><samples>'"):
        scan_sources([tmp_path / "train.tsv"])


def _lhotse_manifests(tmp_path: Path, clips: list[tuple[str, Path, str]]) -> tuple[Path, Path]:
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs = RecordingSet.from_recordings(Recording.from_file(p, recording_id=uid) for uid, p, _ in clips)
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=uid, recording_id=uid, start=0.0, duration=recs[uid].duration, speaker=spk, text="hi")
        for uid, _, spk in clips
    )
    recs.to_file(tmp_path / "recordings.jsonl")
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    return tmp_path / "recordings.jsonl", tmp_path / "cuts.jsonl.gz"


def test_lhotse_recordings_and_cuts(tmp_path: Path, lyra_dir: Path) -> None:
    pytest.importorskip("lhotse")
    clips = _clips(tmp_path)
    recordings, cuts = _lhotse_manifests(tmp_path, clips)
    assert [(i.id, i.path) for i in scan_sources([recordings])] == [(uid, str(p)) for uid, p, _ in clips]
    cut_items = scan_sources([cuts])
    assert sorted(i.path for i in cut_items) == sorted(str(p) for _, p, _ in clips)
    assert {i.extra["speaker"] for i in cut_items} == {"spk0", "spk1"} and {i.extra["text"] for i in cut_items} == {
        "hi"
    }
    assert _tokenize(str(cuts), "--out", str(tmp_path / "store")) == 0
    assert sorted(TokenStore.open(tmp_path / "store").ids()) == sorted(i.id for i in cut_items)


def test_lhotse_cut_of_part_of_a_recording_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("lhotse")
    from lhotse import CutSet, Recording, RecordingSet

    uid, path, _ = _clips(tmp_path, 1, 1)[0]
    recs = RecordingSet.from_recordings([Recording.from_file(path, recording_id=uid)])
    CutSet.from_manifests(recordings=recs).truncate(max_duration=0.1, offset_type="start").to_file(
        tmp_path / "cuts.jsonl.gz"
    )
    with pytest.raises(AudioError, match="only whole-recording cuts are read"):
        scan_sources([tmp_path / "cuts.jsonl.gz"])


def test_lhotse_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codec2vec.corpora.community import lhotse_rows

    (tmp_path / "cuts.jsonl.gz").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lhotse", None)  # as if not installed
    with pytest.raises(AudioError, match=r"needs lhotse: pip install 'codec2vec\[lhotse\]'"):
        lhotse_rows(tmp_path / "cuts.jsonl.gz")


@pytest.mark.parametrize("name", ["missing.wav", "missing_folder"])
def test_missing_input_fails_before_a_store_exists(tmp_path: Path, capsys, name: str) -> None:
    assert _tokenize(str(tmp_path / name), "--out", str(tmp_path / "store")) == 2
    assert "no such file, folder or manifest" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", ["list.csv", "list.json", "segments"])
def test_unsupported_manifest_format_fails_before_a_store_exists(tmp_path: Path, capsys, name: str) -> None:
    (tmp_path / name).write_text("id,path\na,a.wav\n")
    assert _tokenize(str(tmp_path / name), "--out", str(tmp_path / "store")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / name}: neither audio nor a manifest format" in err and "unexpected" not in err
    assert not (tmp_path / "store").exists()


def test_unknown_codec_lists_the_choices(tmp_path: Path, capsys) -> None:
    _clips(tmp_path, 1, 1)
    assert main(["tokenize", str(tmp_path / "wav"), "--out", str(tmp_path / "store"), "--codec", "lyr"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'lyr'" in err and all(c in err for c in ("lyra", "dac", "encodec", "mimi"))
    assert "unexpected" not in err and not (tmp_path / "store").exists()


def test_probe_on_another_tasks_folder_fails_before_features(tmp_path: Path, capsys) -> None:
    """`probe pr` on a KS folder (no `phones`): one line naming the file and the field; no feature cache made."""
    rows = [{"id": f"u{i}", "path": "a.wav", "seconds": 1.0, "split": s, "label": "yes"} for i, s in enumerate(
        ["train", "dev", "test"])]  # fmt: skip
    write_task(tmp_path / "ks", "ks", rows, labels=["yes"])
    cache = tmp_path / "cache"
    code = main(["probe", "pr", "--ckpt", str(tmp_path / "run"), "--data", str(tmp_path / "ks"),
                 "--cache-dir", str(cache), "--json"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{tmp_path / 'ks' / 'train.jsonl'}:1: task pr needs phones in every row (a ks folder)" in err
    assert not cache.exists()
    assert main(["probe", "sid", "--ckpt", "x", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no such task folder" in capsys.readouterr().err


def test_corpus_kaldi_writes_sid_and_asr_folders(tmp_path: Path) -> None:
    clips = _clips(tmp_path, speakers=3, per_speaker=10)
    d = _kaldi_dir(tmp_path, clips)
    assert main(["corpus", "kaldi", str(d), "--out", str(tmp_path / "tasks"), "--json"]) == 0
    for task in ("sid", "asr"):
        rows = [
            json.loads(x) for s in ("train", "dev", "test") for x in (tmp_path / "tasks" / task / f"{s}.jsonl").open()
        ]
        assert sorted(r["id"] for r in rows) == sorted(uid for uid, _, _ in clips)
        assert {r["split"] for r in rows} == {"train", "dev", "test"}
        for r in rows:  # paths relative to the task folder, as every manifest
            assert (tmp_path / "tasks" / task / r["path"]).resolve() == (d.parent.parent / "wav" / f"{r['id']}.wav")
    sid = [json.loads(x) for x in (tmp_path / "tasks" / "sid" / "test.jsonl").open()]
    assert all(r["label"] == r["id"].split("-")[0] for r in sid)


def test_corpus_lhotse_writes_the_same_ids_tokenize_stores(tmp_path: Path) -> None:
    pytest.importorskip("lhotse")
    clips = _clips(tmp_path, speakers=3, per_speaker=4)
    _, cuts = _lhotse_manifests(tmp_path, clips)
    assert main(["corpus", "lhotse", str(cuts), "--out", str(tmp_path / "tasks"), "--json"]) == 0
    rows = [json.loads(x) for s in ("train", "dev", "test") for x in (tmp_path / "tasks" / "sid" / f"{s}.jsonl").open()]
    assert sorted(r["id"] for r in rows) == sorted(i.id for i in scan_sources([cuts]))
    assert {r["label"] for r in rows} == {"spk0", "spk1", "spk2"}


@pytest.mark.slow
def test_extract_checks_its_inputs_before_the_output_folder_exists(tiny_run: dict, tmp_path: Path, capsys) -> None:
    (tmp_path / "list.csv").write_text("id,path\n")
    for src, reason in [("missing.wav", "no such file"), ("list.csv", "neither audio nor a manifest format")]:
        out = tmp_path / f"features-{src}"
        assert main(["extract", str(tiny_run["run"]), str(tmp_path / src), "--out", str(out), "--json"]) == 2
        assert reason in capsys.readouterr().err and not out.exists()


def test_pretrain_checks_the_store_before_the_run_folder_exists(tmp_path: Path, capsys) -> None:
    make_store(tmp_path / "store", {f"u{i}": 60 for i in range(4)}, k=46, v=16)  # a (fake) Lyra store
    run = tmp_path / "run"
    cases = [
        (["data.codec=dac"], "data.codec: the config expects 'dac' tokens"),
        (["targets=clusters"], "targets.clusters.labels='km': " + str(tmp_path / "store") + " has no such label set"),
        ([f"data.dev_store={tmp_path / 'nowhere'}"], "nowhere"),
    ]
    for overrides, reason in cases:
        args = [
            "pretrain",
            str(ROOT / "configs" / "lyra_tiny.yaml"),
            f"data.store={tmp_path / 'store'}",
            f"run.dir={run}",
            *overrides,
        ]
        assert main(args) == 2
        assert reason in capsys.readouterr().err and not run.exists()
