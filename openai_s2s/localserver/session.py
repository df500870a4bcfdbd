"""The Realtime session as the server keeps it: its defaults per generation, ``session.update``,
and what the rest of the server reads from it (formats, turn detection, tools, modalities)."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Protocol

from ..media.formats import PCM24, AudioFormat, format_from_wire
from ..realtime.service import DEFAULT_MODEL

# Fields only the beta shape has: a GA server refuses an update that carries any of them.
BETA_SESSION_KEYS = {"modalities", "voice", "input_audio_format", "output_audio_format",
                     "turn_detection", "input_audio_transcription", "input_audio_noise_reduction",
                     "temperature", "max_response_output_tokens"}
_ids = itertools.count(1)


class ServerOptions(Protocol):
    """The server's settings as a connection reads them: at each use, so a test may change
    ``reply`` or ``speed`` while a call goes on."""
    record: bool
    reply: str
    speed: float
    vad_threshold: float


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def event_names(generation: str) -> Dict[str, str]:
    """The streamed reply's event prefixes; GA renamed them but kept "audio"/"text" parts."""
    if generation == "beta":
        return {"audio": "response.audio", "transcript": "response.audio_transcript",
                "text": "response.text", "part_audio": "audio", "part_text": "text"}
    return {"audio": "response.output_audio", "transcript": "response.output_audio_transcript",
            "text": "response.output_text", "part_audio": "audio", "part_text": "text"}


def default_session(generation: str) -> Dict[str, Any]:
    # Only the fields the openai package's models declare, so the strict validators pass.
    base = {"model": DEFAULT_MODEL, "instructions": "You are a local test server.",
            "tools": [], "tool_choice": "auto"}
    vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
           "silence_duration_ms": 500, "create_response": True, "interrupt_response": True}
    if generation == "beta":
        # the beta shape's session names no model newer than gpt-realtime
        return dict(base, id=new_id("sess"), model="gpt-realtime", modalities=["audio", "text"],
                    voice="alloy", input_audio_format="pcm16", output_audio_format="pcm16",
                    turn_detection=vad, temperature=0.8)
    return dict(base, type="realtime", output_modalities=["audio"], audio={
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": vad},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}})


class SessionState:
    """One connection's session object and the settings read from it."""

    def __init__(self, generation: str) -> None:
        self.generation = generation
        self.session: Dict[str, Any] = {}
        self.in_fmt: AudioFormat = PCM24
        self.out_fmt: AudioFormat = PCM24
        self.vad: Optional[Dict[str, Any]] = {"type": "server_vad", "silence_duration_ms": 500,
                                              "create_response": True}
        self.tools: List[Dict[str, Any]] = []
        self.text_only = False

    def start(self) -> Dict[str, Any]:
        """The session as ``session.created`` announces it."""
        self.session = default_session(self.generation)
        return self.session

    def silence_ms(self) -> Optional[int]:
        """How much quiet ends a turn; None when turn detection is off."""
        if not self.vad:
            return None
        vad = self.vad if isinstance(self.vad, dict) else {}
        return int(vad.get("silence_duration_ms") or 500)

    def creates_response(self) -> bool:
        return not isinstance(self.vad, dict) or bool(self.vad.get("create_response", True))

    def update(self, update: Dict[str, Any]) -> Optional[str]:
        """Apply a ``session.update``; the error code when it is refused, else None."""
        if self.generation == "ga" and (update.get("type") != "realtime" or BETA_SESSION_KEYS & update.keys()):
            return "beta_api_shape_disabled"
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.session.setdefault("audio", {})
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        audio.setdefault(side, {}).update(value[side])
            else:
                self.session[key] = value
        if self.generation == "ga":
            audio = self.session["audio"]
            self.in_fmt = format_from_wire(audio["input"].get("format")) or PCM24
            self.out_fmt = format_from_wire(audio["output"].get("format")) or PCM24
            self.vad = audio["input"].get("turn_detection")
            self.text_only = self.session.get("output_modalities") == ["text"]
        else:
            self.in_fmt = format_from_wire(self.session.get("input_audio_format")) or PCM24
            self.out_fmt = format_from_wire(self.session.get("output_audio_format")) or PCM24
            self.vad = self.session.get("turn_detection")
            self.text_only = "audio" not in (self.session.get("modalities") or ["audio"])
        self.tools = [t for t in self.session.get("tools") or [] if isinstance(t, dict)]
        return None
