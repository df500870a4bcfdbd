"""Audio formats of the Realtime API and the conversions to and from the channel.

The channel side is always 16-bit little-endian mono PCM at the channel's rate
(what a FreeSWITCH media bug hands over). The model side is one of the wire
formats below. G.711 is 8 kHz, so an 8 kHz channel talking G.711 skips
resampling entirely.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from . import g711


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    name: str      # "pcm", "pcmu" or "pcma"
    rate: int

    @property
    def ga(self) -> dict:
        if self.name == "pcm":
            return {"type": "audio/pcm", "rate": self.rate}
        return {"type": "audio/" + self.name}

    @property
    def beta(self) -> str:
        return {"pcm": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}[self.name]


PCM24 = AudioFormat("pcm", 24000)
PCMU = AudioFormat("pcmu", 8000)
PCMA = AudioFormat("pcma", 8000)

_FROM_GA = {"audio/pcm": PCM24, "audio/pcmu": PCMU, "audio/pcma": PCMA}
_FROM_BETA = {"pcm16": PCM24, "g711_ulaw": PCMU, "g711_alaw": PCMA}

_ENCODERS: "dict[str, Callable[[bytes], bytes]]" = {
    "pcm": bytes, "pcmu": g711.ulaw_encode, "pcma": g711.alaw_encode}
_DECODERS: "dict[str, Callable[[bytes], bytes]]" = {
    "pcm": bytes, "pcmu": g711.ulaw_decode, "pcma": g711.alaw_decode}


def format_from_wire(value: object) -> Optional[AudioFormat]:
    """A GA format object ({"type": "audio/pcmu"}) or a beta name ("g711_ulaw")."""
    if isinstance(value, dict):
        return _FROM_GA.get(value.get("type", "audio/pcm"))
    if isinstance(value, str):
        return _FROM_BETA.get(value) or _FROM_GA.get(value)
    return None


class Resampler:
    """Streaming rate converter for 16-bit PCM that keeps its filter state between chunks."""

    def __init__(self, src_rate: int, dst_rate: int, quality: str = "sinc_medium"):
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._ratio = dst_rate / src_rate
        self._converter = None
        if src_rate != dst_rate:
            import samplerate  # imported here: unit tests of the rest need no C extension
            self._converter = samplerate.Resampler(quality, channels=1)

    def process(self, pcm: bytes) -> bytes:
        if self._converter is None or not pcm:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32)
        out = self._converter.process(samples * (1 / 32768), self._ratio, end_of_input=False)
        return np.clip(np.rint(out * 32768), -32768, 32767).astype("<i2").tobytes()


class UplinkEncoder:
    """Channel PCM -> the model's input format."""

    def __init__(self, channel_rate: int, fmt: AudioFormat, quality: str = "sinc_medium"):
        self.format = fmt
        self._resampler = Resampler(channel_rate, fmt.rate, quality)
        self._encode = _ENCODERS[fmt.name]

    def encode(self, pcm: bytes) -> bytes:
        return self._encode(self._resampler.process(pcm))


class DownlinkDecoder:
    """The model's output format -> channel PCM."""

    def __init__(self, fmt: AudioFormat, channel_rate: int, quality: str = "sinc_medium"):
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
