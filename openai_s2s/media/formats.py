"""The Realtime API's audio formats, and how each is named on the wire by either generation.

The channel side is always 16-bit little-endian mono PCM at the channel's rate (what a
FreeSWITCH media bug or unicast datagram carries). G.711 is 8 kHz, so an 8 kHz channel
talking G.711 skips resampling entirely.
"""
from __future__ import annotations

import dataclasses
from typing import Optional


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
        return BETA_NAMES[self.name]

    @property
    def live(self) -> dict:
        """GPT-Live names every format with its rate (G.711 at 8000)."""
        return {"type": "audio/" + self.name, "rate": self.rate}


PCM24 = AudioFormat("pcm", 24000)
PCMU = AudioFormat("pcmu", 8000)
PCMA = AudioFormat("pcma", 8000)
PCM16 = AudioFormat("pcm", 16000)     # GPT-Live only
BY_NAME = {fmt.name: fmt for fmt in (PCM24, PCMU, PCMA)}
BETA_NAMES = {"pcm": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}   # the beta protocol's names

_FROM_GA = {"audio/" + name: fmt for name, fmt in BY_NAME.items()}
_FROM_BETA = {BETA_NAMES[name]: fmt for name, fmt in BY_NAME.items()}


def format_from_wire(value: object) -> Optional[AudioFormat]:
    """A GA format object ({"type": "audio/pcmu"}) or a beta name ("g711_ulaw")."""
    if isinstance(value, dict):
        kind = value.get("type", "audio/pcm")
        return _FROM_GA.get(kind) if isinstance(kind, str) else None
    if isinstance(value, str):
        return _FROM_BETA.get(value) or _FROM_GA.get(value)
    return None



def live_format_from_wire(value: object) -> Optional[AudioFormat]:
    """A GPT-Live format ({"type": "audio/pcm", "rate": 16000}), or a Realtime one (GA or beta)
    that GPT-Live also has; None for anything else."""
    if isinstance(value, dict) and value.get("type") == "audio/pcm" and "rate" in value:
        rate = value["rate"]
        return {16000: PCM16, 24000: PCM24}.get(rate) if type(rate) is int else None
    if isinstance(value, dict) and value.get("type") in ("audio/pcmu", "audio/pcma") \
            and value.get("rate", 8000) != 8000:
        return None
    return format_from_wire(value)
