"""Streaming resamplers for 16-bit PCM: a by-3 FIR for the telephone rates, libsamplerate elsewhere."""
from __future__ import annotations

from typing import Optional

import numpy as np


def lowpass(taps: int, cutoff: float, beta: float = 8.0) -> np.ndarray:
    """Kaiser-windowed sinc, unity gain at DC; cutoff as a fraction of the sample rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * n) * np.kaiser(taps, beta)
    return (h / h.sum()).astype(np.float32)


# 97 taps: an odd length keeps the delay a whole number of samples (48 at the high rate, 16 at
# the low one each way). Cutoff 0.1625 of the high rate is 3.9 kHz at 24 kHz: flat through the
# telephone band, aliases folded back above it. Measured round trip 8k -> 24k -> 8k on
# speech-like audio: 70 dB SNR in 300-3400 Hz (speex at the original's quality 2: 38.6 dB).
THIRDS_FILTER = lowpass(97, 0.1625)


# The clip ufunc itself: np.clip's Python wrapper costs several microseconds a call, more
# than the rest of a 20 ms frame's conversion.
_clip = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None) \
    or getattr(getattr(getattr(np, "core", None), "umath", None), "clip", None)
_LOW, _HIGH = np.array(-32768, np.float32), np.array(32767, np.float32)


def to_pcm16(out: np.ndarray) -> bytes:
    """Float samples in 16-bit units -> 16-bit LE PCM: rounded to nearest even, then clipped.
    ``out`` is overwritten."""
    np.rint(out, out=out)
    if _clip is not None:
        _clip(out, _LOW, _HIGH, out=out)
    else:
        np.clip(out, -32768, 32767, out=out)
    return out.astype("<i2").tobytes()


class ThirdsResampler:
    """Up or down by exactly 3 (8 <-> 24 kHz, 16 <-> 48 kHz) with one FIR, streaming.

    The by-3 ratio of telephone audio to the Realtime API's 24 kHz makes a polyphase FIR
    cheaper than libsamplerate's arbitrary-ratio sinc_medium at a better in-band quality
    (docs/design.md). Each call is one matrix product: the input's windows (a strided view of
    the history and the new samples, copied into a contiguous matrix so that BLAS takes it) by
    the filter's phases (three columns up; one column, every third window, down). The buffers
    are kept from one call to the next while the length stays the same (a call's 20 ms
    frames): a 20 ms frame costs about a dozen numpy calls, whatever their size.

    The filter is linear, so samples may be in any unit: :class:`Resampler` passes 16-bit
    values as they are (the scale by 2**-15 and back that [-1, 1] floats need is exact, so
    the result is the same)."""

    def __init__(self, up: bool, taps: np.ndarray = THIRDS_FILTER):
        self.up = up
        if up:
            padded = np.concatenate([taps, np.zeros(-len(taps) % 3, np.float32)])
            phases = [3 * padded[p::3] for p in range(3)]   # x3: zero-stuffing divides by 3
            # out[3i + p] = sum_j x[i + j] * phase_p[L - 1 - j]: convolution, as a product
            self._bank = np.ascontiguousarray(np.stack([ph[::-1] for ph in phases], axis=1))
        else:
            self._bank = np.ascontiguousarray(taps[::-1].reshape(-1, 1))
        self._width = self._bank.shape[0]
        self._keep = self._width - 1             # samples of history
        self._skip = 0    # down: the first output's window, counted in the next call's windows
        self._buf = np.zeros(self._keep, np.float32)   # history, then the newest input
        self._layout_for: Optional[tuple] = None
        self._windows = self._matrix = self._out = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Float samples in -> float samples out (a new array)."""
        out = self._run(x)
        return out.reshape(-1).copy() if out is not None else np.zeros(0, np.float32)

    def process_pcm(self, pcm: bytes) -> bytes:
        """16-bit LE PCM in -> 16-bit LE PCM out (rounded and clipped)."""
        out = self._run(np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2))
        return to_pcm16(out) if out is not None else b""

    def _run(self, x: np.ndarray) -> Optional[np.ndarray]:
        """The outputs for ``x`` (in any float-castable dtype), in a buffer of this
        resampler's that the next call overwrites; None when there are none."""
        n, keep = len(x), self._keep
        if len(self._buf) != keep + n:
            buf = np.empty(keep + n, np.float32)
            buf[:keep] = self._buf[:keep]
            self._buf = buf
        buf = self._buf
        buf[keep:] = x
        if self.up:
            rows, start, step = n, 0, 1
        else:
            windows = n    # len(buf) - width + 1
            start, step = self._skip, 3
            rows = max(0, -(-(windows - start) // 3))
            self._skip = start + 3 * rows - windows
        if rows:
            layout = (n, rows, start)
            if layout != self._layout_for:
                self._layout_for = layout
                self._windows = np.lib.stride_tricks.as_strided(
                    buf[start:], (rows, self._width), (4 * step, 4), writeable=False)
                self._matrix = np.empty((rows, self._width), np.float32)
                self._out = np.empty((rows, self._bank.shape[1]), np.float32)
            np.copyto(self._matrix, self._windows)
            np.matmul(self._matrix, self._bank, out=self._out)
        buf[:keep] = buf[n:]
        return self._out if rows else None


class Resampler:
    """Streaming rate converter for 16-bit PCM that keeps its filter state between chunks.

    quality "fir" (the default) uses :class:`ThirdsResampler` where the ratio is exactly 3
    and libsamplerate's sinc_medium elsewhere; the other names pick a libsamplerate converter."""

    def __init__(self, src_rate: int, dst_rate: int, quality: str = "fir"):
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._ratio = dst_rate / src_rate
        self._converter = None
        self._thirds: Optional[ThirdsResampler] = None
        # Exactly dst/src outputs per input sample on every call: none (src == dst) or by-3 up.
        self.passes_through = src_rate == dst_rate
        self.exact_up = False
        if src_rate == dst_rate:
            return
        if quality == "fir" and (dst_rate == 3 * src_rate or src_rate == 3 * dst_rate):
            self._thirds = ThirdsResampler(up=dst_rate > src_rate)
            self.exact_up = dst_rate > src_rate
            return
        import samplerate  # imported here: unit tests of the rest need no C extension
        self._converter = samplerate.Resampler("sinc_medium" if quality == "fir" else quality, channels=1)

    def process(self, pcm: bytes) -> bytes:
        if (self._converter is None and self._thirds is None) or not pcm:
            return pcm
        if self._thirds is not None:
            return self._thirds.process_pcm(pcm)
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32) * (1 / 32768)
        out = self._converter.process(samples, self._ratio, end_of_input=False)
        return to_pcm16(out * 32768)

