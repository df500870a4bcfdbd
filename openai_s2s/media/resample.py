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


BLOCK = 32    # outputs of a block down, inputs of a block up
# Blocks per matrix product at most: OpenBLAS splits a larger product over its threads (here
# from about 500 blocks, 2 s of audio down), whose workers then spin; the np.convolve this
# replaced never did. 64 blocks stay on the calling thread (measured).
SLAB = 64


class ThirdsResampler:
    """Up or down by exactly 3 (8 <-> 24 kHz, 16 <-> 48 kHz) with one FIR, streaming.

    The by-3 ratio of telephone audio to the Realtime API's 24 kHz makes a polyphase FIR
    cheaper than libsamplerate's arbitrary-ratio sinc_medium at a better in-band quality
    (docs/design.md). Each call is one matrix product, in blocks: the input is cut into
    blocks of ``BLOCK`` samples up (``BLOCK`` outputs down), each block's span of input
    (history included) is a row, and a banded matrix holding the filter, shifted once per
    output of the block, turns every row into its block's outputs. The rows overlap by the
    filter's length, so the matrix BLAS is given is about twice the input, not one row per
    output (a 97-tap window per output is 32 times the input down); a 20 ms frame costs a
    handful of numpy calls, whatever their size.

    The filter is linear, so samples may be in any unit: :class:`Resampler` passes 16-bit
    values as they are (the scale by 2**-15 and back that [-1, 1] floats need is exact, so
    the result is the same)."""

    def __init__(self, up: bool, taps: np.ndarray = THIRDS_FILTER, block: int = BLOCK):
        self.up = up
        self._block = block
        taps = np.asarray(taps, np.float32)
        if up:
            padded = np.concatenate([taps, np.zeros(-len(taps) % 3, np.float32)])
            phases = [3 * padded[p::3] for p in range(3)]   # x3: zero-stuffing divides by 3
            width = len(phases[0])
            self._keep = width - 1
            # out[3i + p] = sum_j x[i + j] * phase_p[width - 1 - j], x counted from the history
            matrix = np.zeros((block + self._keep, 3 * block), np.float32)
            for i in range(block):
                for p, phase in enumerate(phases):
                    matrix[i:i + width, 3 * i + p] = phase[::-1]
            self._stride = block
        else:
            width = len(taps)
            self._keep = width - 1
            # out[m] = sum_t x[3m + t] * taps[width - 1 - t]
            matrix = np.zeros((3 * (block - 1) + width, block), np.float32)
            for m in range(block):
                matrix[3 * m:3 * m + width, m] = taps[::-1]
            self._stride = 3 * block
        self._matrix = matrix
        self._span = matrix.shape[0]   # input samples a block's row holds
        self._skip = 0    # down: the first output's window, counted in the next call's windows
        self._buf = np.zeros(self._keep + self._span, np.float32)   # history, the new input, slack
        self._products = np.zeros((0, self._span), np.float32)   # the rows, contiguous for BLAS
        self._outputs = np.zeros((0, self._matrix.shape[1]), np.float32)
        self._layout_for: Optional[tuple] = None
        self._layout: tuple = ()

    def process(self, x: np.ndarray) -> np.ndarray:
        """Float samples in -> float samples out (a new array)."""
        return self._run(x).copy()

    def process_pcm(self, pcm: bytes) -> bytes:
        """16-bit LE PCM in -> 16-bit LE PCM out (rounded and clipped)."""
        out = self._run(np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2))
        return to_pcm16(out) if len(out) else b""

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The outputs for ``x`` (in any float-castable dtype), in a buffer of this resampler's
        that the next call overwrites."""
        n, keep, block = len(x), self._keep, self._block
        if self.up:
            start, outputs = 0, 3 * n
            blocks = -(-n // block)
        else:
            start = self._skip
            outputs = max(0, -(-(n - start) // 3))     # windows at start, start + 3, ... < n
            self._skip = start + 3 * outputs - n
            blocks = -(-outputs // block)
        need = max(keep + n, start + self._stride * (blocks - 1) + self._span) if blocks else keep + n
        if len(self._buf) < need:
            buf = np.zeros(2 * need, np.float32)   # slack meets zeros of the matrix: finite
            buf[:keep] = self._buf[:keep]
            self._buf = buf
            self._layout_for = None
        if blocks > len(self._products):
            self._products = np.zeros((2 * blocks, self._span), np.float32)
            self._outputs = np.zeros((2 * blocks, self._matrix.shape[1]), np.float32)
            self._layout_for = None
        buf = self._buf
        buf[keep:keep + n] = x     # what lies after it is slack: the outputs it feeds are cut off
        if blocks:
            if self._layout_for != (blocks, start, outputs):     # kept while the input's length is
                self._layout_for = (blocks, start, outputs)
                self._layout = (np.ndarray((blocks, self._span), np.float32, buffer=buf, offset=4 * start,
                                           strides=(4 * self._stride, 4)),
                                self._products[:blocks], self._outputs[:blocks],
                                self._outputs.reshape(-1)[:outputs])
            rows, products, out, result = self._layout
            np.copyto(products, rows)
            if blocks <= SLAB:
                np.matmul(products, self._matrix, out=out)
            else:
                for i in range(0, blocks, SLAB):
                    np.matmul(products[i:i + SLAB], self._matrix, out=out[i:i + SLAB])
        else:
            result = np.zeros(0, np.float32)
        buf[:keep] = buf[n:n + keep]
        return result


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

