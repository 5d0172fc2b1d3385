"""Who speaks in a synthetic corpus, and how: eSpeak NG voices as speakers, and speaking styles.

A speaker is a distinct combination of accent, voice variant, pitch, pitch range and rate, drawn from a seed and
kept for all of its utterances (`make_speakers`); `style_voice` turns a speaker's voice into one speaking style
(neutral, fast, slow, animated, whisper), relative to the speaker's own settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codec2vec.common.errors import ConfigError

ACCENTS: tuple[str, ...] = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
)  # fmt: skip
STYLES: tuple[str, ...] = ("neutral", "fast", "slow", "animated", "whisper")


def make_speakers(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` distinct speakers: accent x variant combinations first, then pitch/range/rate on top."""
    if n < 1:
        raise ConfigError(f"speakers: need at least 1, got {n}")
    rng = np.random.default_rng([seed, 1])
    combos = [(a, v) for a in ACCENTS for v in VARIANTS]
    order = rng.permutation(len(combos))
    speakers, seen = [], set()
    for k in range(n):
        accent, variant = combos[order[k % len(combos)]]
        while True:
            voice = {
                "language": accent, "variant": variant, "rate": int(rng.integers(145, 206)),
                "pitch": int(rng.integers(20, 81)), "range": int(rng.integers(25, 86)), "volume": 100, "wordgap": 0,
            }  # fmt: skip
            key = tuple(voice.values())
            if key not in seen:
                break
        seen.add(key)
        speakers.append({"speaker": f"spk{k:02d}" if n <= 100 else f"spk{k:04d}", "voice": voice})
    return speakers


def style_voice(voice: dict[str, Any], style: str) -> dict[str, Any]:
    """A speaker's voice changed into one speaking style (relative to the speaker's own settings)."""
    v = dict(voice)
    if style == "fast":
        v["rate"] = int(v["rate"] * 1.55)
    elif style == "slow":
        v["rate"], v["wordgap"] = int(v["rate"] * 0.62), 2
    elif style == "animated":
        v["pitch"], v["range"], v["volume"] = min(99, v["pitch"] + 25), 99, 140
    elif style == "whisper":
        v["variant"] = "whisper"
    return v
