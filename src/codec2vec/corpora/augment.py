"""Acoustic conditions for synthetic speech: coloured noise at a given SNR and synthesised room reverberation.

All functions take and return float arrays `(S,)` at the corpus sample rate and draw from the caller's
generator, so a clip's seed fixes its noise and room.
"""

from __future__ import annotations

import numpy as np


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) noise, unit RMS, shape (n,)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / max(n, 1))
    spec *= {"white": 1.0, "pink": 1.0 / np.sqrt(f), "brown": 1.0 / f}[kind]
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`wav` plus white/pink/brown noise scaled to the given SNR (signal power over the whole clip)."""
    noise = colored_noise(rng, len(wav), ("white", "pink", "brown")[int(rng.integers(3))])
    power = np.mean(wav**2) + 1e-12
    return wav + noise * np.sqrt(power / 10 ** (snr_db / 10))


def room_impulse(rng: np.random.Generator, rt60: float, sr: int) -> np.ndarray:
    """A synthetic room impulse response: a direct path, a few early reflections, then exponentially
    decaying noise reaching -60 dB at `rt60` seconds (the usual statistical reverberation model)."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    h = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB at rt60
    h[: int(0.005 * sr)] = 0.0  # reflections arrive after the direct sound
    for _ in range(6):
        h[int(rng.uniform(0.002, 0.03) * sr)] += rng.uniform(-0.5, 0.5)
    h *= 0.3 / (np.sqrt(np.sum(h**2)) + 1e-12)
    h[0] = 1.0
    return h


def reverberate(wav: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Convolve with a fresh room impulse response (RT60 uniform in 0.2..0.8 s); same length as the input."""
    h = room_impulse(rng, float(rng.uniform(0.2, 0.8)), sr)
    n = len(wav) + len(h) - 1
    size = 1 << max(1, (n - 1).bit_length())
    return np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(h, size), size)[: len(wav)]
