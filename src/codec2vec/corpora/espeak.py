"""A small ctypes binding to eSpeak NG (the library shipped by `espeakng-loader`): text -> audio + phoneme times.

eSpeak NG is a formant synthesiser: fast, offline, deterministic, and it reports when each phoneme starts.
That makes it a source of speech with *exact* frame labels for tests, demos and benchmarks (`synth.py`).

    voice = Voice(language="en-us", variant="m3", rate=170, pitch=45)
    wav, phones = synthesize("the cat sat", voice)   # wav (S,) float32 at SAMPLE_RATE=22050 Hz
                                                     # phones: [(start_seconds, mnemonic), ...], rising

The binding loads the library once per process (eSpeak keeps process-global state: parallelise with worker
processes, never threads) in synchronous mode with phoneme events switched on. Mnemonics are eSpeak's own
(`D`, `@2`, `k`, `'aU`); `to_arpabet` maps them onto the phone set documented at `PHONES`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.errors import Codec2VecError

SAMPLE_RATE = 22050  # what espeak_Initialize returns for the shipped voices (checked at load)

# The phone set: the 39 ARPAbet phones of CMUdict without stress (the usual TIMIT/LibriSpeech PR set),
# plus "sil" for pauses and silence. Real-data loaders (datasets.py) use the same set via cmudict.
PHONES: tuple[str, ...] = (
    "sil", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
    "Y", "Z", "ZH",
)  # fmt: skip
VOWELS: frozenset[str] = frozenset(
    {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
)

# eSpeak NG English mnemonics (stress marks removed) -> ARPAbet. A mnemonic naming a vowel + r (`A@`, `e@`)
# maps to two phones, which share its duration. Collected from the en-us, en and en-GB-* voices.
_ESPEAK_TO_ARPA: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",), "f": ("F",), "v": ("V",),
    "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",), "S": ("SH",), "Z": ("ZH",), "h": ("HH",),
    "m": ("M",), "n": ("N",), "N": ("NG",), "l": ("L",), "r": ("R",), "w": ("W",), "j": ("Y",),
    "tS": ("CH",), "dZ": ("JH",), "t#": ("T",), "d#": ("D",), "n-": ("N",), "m-": ("M",), "l-": ("L",),
    "r-": ("R",), "l/": ("L",), "l#": ("L",), "z#": ("Z",), "s#": ("S",), "x": ("HH",), "?": ("T",),
    "W": ("W",), "C": ("HH",), "t[": ("T",), "n#": ("N",), "t2": ("T",), "d2": ("D",), "k#": ("K",), "z/": ("Z",),
    # vowels
    "a": ("AE",), "a#": ("AH",), "aa": ("AE",), "A:": ("AA",), "A": ("AA",), "0": ("AA",), "A#": ("AA",),
    "E": ("EH",), "e": ("EH",), "eI": ("EY",), "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "V": ("AH",),
    "3:": ("ER",), "3": ("ER",), "@L": ("AH", "L"), "I": ("IH",), "I#": ("IH",), "I2": ("IH",),
    "i": ("IY",), "i:": ("IY",), "O": ("AO",), "O:": ("AO",), "O2": ("AO",), "OI": ("OY",), "oU": ("OW",),
    "o": ("OW",), "o:": ("OW",), "oU#": ("OW",), "u:": ("UW",), "u": ("UW",), "U": ("UH",), "aI": ("AY",),
    "aU": ("AW",), "e:": ("EY",), "a2": ("AH",), "u:#": ("UW",), "I2#": ("IH",), "E2": ("EH",),
    "@#": ("AH",), "aI3": ("AY", "ER"), "aI@": ("AY", "ER"), "aU@": ("AW", "ER"),
    # vowel + r
    "A@": ("AA", "R"), "e@": ("EH", "R"), "i@": ("IY", "AH"), "i@3": ("IY", "R"), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "U@": ("UH", "R"), "3:r": ("ER",), "IR": ("IH", "R"), "VR": ("ER",), "ir": ("IY", "R"),
    "Er": ("EH", "R"), "Ar": ("AA", "R"), "Or": ("AO", "R"), "@r": ("ER",),
    # a glide between two vowels: no phone of its own, it lengthens the one before
    ";": (),
    # pauses
    "_": ("sil",), "_:": ("sil",), "_!": ("sil",), "_^_": ("sil",), "": ("sil",), "||": ("sil",),
}  # fmt: skip

# speak_lib.h constants (eSpeak NG 1.52)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """`espeak_EVENT` from speak_lib.h (1.52): the `id` union holds the phoneme mnemonic for type 7."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the text
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """One eSpeak NG voice setting: everything that makes a synthetic speaker (or a speaking style) sound so.

    `variant` names a file under `voices/!v/` ("" = the language's default); rate is words per minute
    (80..450), pitch and range 0..100, volume 0..200, wordgap in units of 10 ms.
    """

    language: str = "en-us"
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100
    wordgap: int = 0

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


class _Engine:
    """The process-global library handle, with the callback's collection buffers."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise Codec2VecError("eSpeak NG is not installed: pip install 'codec2vec[synth]'") from None
        lib_path, data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        self.data_path = Path(data_path)
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, str(data_path).encode(), _INIT_PHONEME_EVENTS)
        if rate != SAMPLE_RATE:
            raise Codec2VecError(f"eSpeak NG at {lib_path}: sample rate {rate}, expected {SAMPLE_RATE}")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: the C side holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voice: Voice | None = None

    def _collect(self, wav: Any, n: int, events: Any) -> int:  # short* samples, espeak_EVENT* events
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                raw = bytes(events[i].id.string).split(b"\0", 1)[0]
                self.events.append((events[i].audio_position, raw.decode("utf-8", "replace")))
            i += 1
        return 0  # 0 = go on

    def set_voice(self, voice: Voice) -> None:
        if voice == self.voice:
            return
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise Codec2VecError(f"eSpeak NG: no voice {voice.name!r} in {self.data_path}/voices")
        for key, param in _PARAM.items():
            self.lib.espeak_SetParameter(param, int(getattr(voice, key)), 0)
        self.voice = voice

    def synth(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, list[tuple[float, str]]]:
        self.set_voice(voice)
        self.lib.espeak_ng_SetRandSeed(seed)  # noise sources (breath, Klatt) draw from it; time-seeded otherwise
        self.chunks, self.events = [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self.lib.espeak_Synth(buf, len(buf), 0, 1, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise Codec2VecError(f"eSpeak NG: synthesis failed (error {err}) for text {text[:40]!r}")
        wav = (np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
        events = [(ms / 1000.0, name) for ms, name in self.events]
        return wav, events


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def synthesize(text: str, voice: Voice, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Speak `text`; returns (wav (S,) float32 in [-1, 1] at SAMPLE_RATE, [(start_seconds, mnemonic), ...]).

    `seed` feeds eSpeak's noise generator. The output also depends on what this process spoke before
    (eSpeak keeps some wave-generator state, e.g. the pitch-flutter phase): replay the same sequence of
    calls in a fresh process to reproduce audio exactly. Phoneme start times rise monotonically (checked:
    a violation means the struct layout is wrong).
    """
    wav, events = _engine().synth(text, voice, seed)
    times = [t for t, _ in events]
    if any(b < a for a, b in zip(times, times[1:])):
        raise Codec2VecError(f"eSpeak NG returned phoneme times that go backwards for {text[:40]!r}")
    return wav, events


def to_arpabet(mnemonic: str) -> tuple[str, ...]:
    """Map one eSpeak NG English mnemonic to phones of `PHONES` (stress marks `'`, `,` and `=` removed).

    An empty tuple means the mnemonic is a transition that lengthens the phone before it.

        Unknown mnemonics fall back on dropping trailing modifiers (`#`, digits, `:`), then raise `KeyError`.
    """
    key = mnemonic.replace("'", "").replace(",", "").replace("=", "").strip()
    if key.startswith("_") or set(key) <= {"|"}:  # every pause or boundary marker: `_`, `_:`, `_|`, `||`, ...
        return ("sil",)
    while key not in _ESPEAK_TO_ARPA:
        shorter = key.rstrip("#0123456789:;/-")
        if shorter == key or not shorter:
            raise KeyError(f"eSpeak mnemonic {mnemonic!r} has no entry in the phone map")
        key = shorter
    return _ESPEAK_TO_ARPA[key]
