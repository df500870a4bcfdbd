"""Audio as the local server handles it: int16 numpy samples, coded per the wire format.

The format names and rates come from :mod:`openai_s2s.media.formats` and G.711 from
:mod:`openai_s2s.media.g711`, so the server and the module read the wire the same way.
Resampling here is linear interpolation: the server only echoes what it heard, and
needs no better than that.
"""
from __future__ import annotations

import numpy as np

from ..media import g711
from ..media.formats import PCM24, AudioFormat


def decode(fmt: AudioFormat, data: bytes) -> np.ndarray:
    """Wire bytes in ``fmt`` as 16-bit samples at ``fmt.rate``."""
    if fmt.name == "pcmu":
        data = g711.ulaw_decode(data)
    elif fmt.name == "pcma":
        data = g711.alaw_decode(data)
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


def encode(fmt: AudioFormat, samples: np.ndarray) -> bytes:
    """16-bit samples at ``fmt.rate`` as wire bytes in ``fmt``."""
    pcm = samples.astype("<i2").tobytes()
    if fmt.name == "pcmu":
        return g711.ulaw_encode(pcm)
    if fmt.name == "pcma":
        return g711.alaw_encode(pcm)
    return pcm


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or not len(samples):
        return samples
    n = int(len(samples) * dst / src)
    return np.interp(np.arange(n) * src / dst, np.arange(len(samples)), samples).astype(np.int16)


def tone(rate: int = PCM24.rate, seconds: float = 1.0, freq: float = 440.0, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)
