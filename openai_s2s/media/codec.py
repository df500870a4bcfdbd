"""Channel PCM to and from the model's wire format: resampling plus G.711 where it applies."""
from __future__ import annotations

from typing import Callable, Optional

from . import g711
from .formats import AudioFormat
from .resample import Resampler

_ENCODERS: "dict[str, Callable[[bytes], bytes]]" = {
    "pcm": bytes, "pcmu": g711.ulaw_encode, "pcma": g711.alaw_encode}
_DECODERS: "dict[str, Callable[[bytes], bytes]]" = {
    "pcm": bytes, "pcmu": g711.ulaw_decode, "pcma": g711.alaw_decode}


class UplinkEncoder:
    """Channel PCM -> the model's input format."""

    def __init__(self, channel_rate: int, fmt: AudioFormat, quality: str = "fir"):
        self.format = fmt
        self._resampler = Resampler(channel_rate, fmt.rate, quality)
        self._encode = _ENCODERS[fmt.name]
        # Wire bytes per channel sample, where every call turns n samples into exactly this
        # many times n (no resampling, or the by-3 FIR up): then frames encoded together
        # come out as they would one at a time, and the uplink encodes a chunk at once.
        # None where the count varies from call to call (libsamplerate, down by 3).
        per_sample = 2 if fmt.name == "pcm" else 1
        if self._resampler.passes_through:
            self.bytes_per_sample: Optional[int] = per_sample
        elif self._resampler.exact_up:
            self.bytes_per_sample = per_sample * fmt.rate // channel_rate
        else:
            self.bytes_per_sample = None

    def encode(self, pcm: bytes) -> bytes:
        return self._encode(self._resampler.process(pcm))


class DownlinkDecoder:
    """The model's output format -> channel PCM."""

    def __init__(self, fmt: AudioFormat, channel_rate: int, quality: str = "fir"):
        self.format = fmt
        self._decode = _DECODERS[fmt.name]
        self._resampler = Resampler(fmt.rate, channel_rate, quality)
        self._carry = b""

    def decode(self, payload: bytes) -> bytes:
        if self.format.name == "pcm":
            # A delta may end mid-sample; keep the odd byte for the next one.
            if self._carry:
                payload, self._carry = self._carry + payload, b""
            if len(payload) % 2:
                payload, self._carry = payload[:-1], payload[-1:]
        return self._resampler.process(self._decode(payload))

