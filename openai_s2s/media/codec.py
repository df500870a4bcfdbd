"""Channel PCM to and from the model's wire format: resampling plus G.711 where it applies."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

from . import g711
from .formats import AudioFormat
from .resample import Resampler, ThirdsResampler, upsample_many

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

        # by-3 up: chunks of many calls can be resampled together (encode_many)
        self.thirds: Optional[ThirdsResampler] = self._resampler.thirds if self._resampler.exact_up else None

    def encode(self, pcm: bytes) -> bytes:
        return self._encode(self._resampler.process(pcm))

    def finish(self, resampled: bytes) -> bytes:
        """The wire format of PCM already at the model's rate (what encode does after resampling)."""
        return self._encode(resampled)


def encode_many(encoders: Sequence[UplinkEncoder], pcms: Sequence[bytes]) -> List[bytes]:
    """``[e.encode(pcm) for e, pcm in zip(encoders, pcms)]``, with the by-3 resampling of all of
    them done at once (resample.upsample_many)."""
    out: List[Optional[bytes]] = [None] * len(encoders)
    groups: Dict[int, List[int]] = {}   # by filter: only resamplers with one matrix stack
    for i, e in enumerate(encoders):
        if e.thirds is not None and pcms[i]:
            groups.setdefault(id(e.thirds.matrix), []).append(i)
    for batch in groups.values():
        if len(batch) > 1:
            ups = upsample_many([encoders[i].thirds for i in batch], [pcms[i] for i in batch])
            for i, up in zip(batch, ups):
                out[i] = encoders[i].finish(up)
    return [done if done is not None else e.encode(pcm) for done, e, pcm in zip(out, encoders, pcms)]


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
