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


# What the service fills in for the fields a turn_detection leaves out, per type (the openai
# package's docstrings: threshold 0.5, prefix 300 ms, silence 500 ms; eagerness "auto").
VAD_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "server_vad": {"threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
                   "create_response": True, "interrupt_response": True},
    "semantic_vad": {"eagerness": "auto", "create_response": True, "interrupt_response": True},
}


class ServerOptions(Protocol):
    """The server's settings as a connection reads them: at each use, so a test may change
    ``reply`` or ``speed`` while a call goes on. ``lenient`` turns off what the service does
    on its own (cancelling a response when the caller starts to speak) and keeps the older,
    looser refusals of ``conversation.item.truncate``."""
    record: bool
    reply: str
    speed: float
    vad_threshold: float
    lenient: bool


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def event_names(generation: str) -> Dict[str, str]:
    """The streamed reply's event prefixes; GA renamed them but kept "audio"/"text" parts."""
    if generation == "beta":
        return {"audio": "response.audio", "transcript": "response.audio_transcript",
                "text": "response.text", "part_audio": "audio", "part_text": "text"}
    return {"audio": "response.output_audio", "transcript": "response.output_audio_transcript",
            "text": "response.output_text", "part_audio": "audio", "part_text": "text"}


def with_vad_defaults(turn_detection: Any, generation: str) -> Any:
    """``turn_detection`` as the service echoes it: its type's defaults where it left a field
    out (or null), so ``{"type": "server_vad"}`` comes back whole. Null stays null (no turn
    detection); a type the server does not know is left as it came."""
    if not isinstance(turn_detection, dict):
        return turn_detection
    kind = turn_detection.get("type") or ("server_vad" if generation == "beta" else None)
    defaults = VAD_DEFAULTS.get(kind) if isinstance(kind, str) else None
    if defaults is None:
        return turn_detection
    given = {k: v for k, v in turn_detection.items() if v is not None}
    filled = {"type": kind, **defaults, **given}
    if generation == "ga" and kind == "server_vad":
        # GA only: the beta models have no idle timeout
        filled.setdefault("idle_timeout_ms", None)
    return filled


def default_session(generation: str) -> Dict[str, Any]:
    # Only the fields the openai package's models declare, so the strict validators pass.
    base = {"model": DEFAULT_MODEL, "instructions": "You are a local test server.",
            "tools": [], "tool_choice": "auto"}
    vad = with_vad_defaults({"type": "server_vad"}, generation)
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
        self.vad: Any = None                   # turn_detection as the session has it
        self.tools: List[Dict[str, Any]] = []
        self.text_only = False
        self.transcribes = False               # input audio transcription is on

    def start(self) -> Dict[str, Any]:
        """The session as ``session.created`` announces it."""
        self.session = default_session(self.generation)
        self._read()
        return self.session

    def silence_ms(self) -> Optional[int]:
        """How much quiet ends a turn; None when turn detection is off."""
        if not self.vad:
            return None
        vad = self.vad if isinstance(self.vad, dict) else {}
        return int(vad.get("silence_duration_ms") or 500)

    def _vad_flag(self, name: str) -> bool:
        """A turn_detection switch that is on unless the session turned it off."""
        return not isinstance(self.vad, dict) or self.vad.get(name) is not False

    def creates_response(self) -> bool:
        return self._vad_flag("create_response")

    def interrupts_response(self) -> bool:
        """Whether the caller's speech cancels a response in progress: only with turn
        detection on, and then unless ``interrupt_response`` is false."""
        return bool(self.vad) and self._vad_flag("interrupt_response")

    def idle_timeout_ms(self) -> Optional[int]:
        """The GA server_vad idle timeout, None when it is not set."""
        vad = self.vad
        if self.generation != "ga" or not isinstance(vad, dict) or vad.get("type") != "server_vad":
            return None
        timeout = vad.get("idle_timeout_ms")
        return timeout if isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > 0 else None

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
        self._fill_vad_defaults()
        self._read()
        return None

    def _fill_vad_defaults(self) -> None:
        if self.generation == "ga":
            holder = self.session["audio"].setdefault("input", {})
        else:
            holder = self.session
        if "turn_detection" in holder:
            holder["turn_detection"] = with_vad_defaults(holder["turn_detection"], self.generation)

    def _read(self) -> None:
        """The settings the rest of the server reads, from the session object."""
        if self.generation == "ga":
            audio = self.session["audio"]
            self.in_fmt = format_from_wire(audio["input"].get("format")) or PCM24
            self.out_fmt = format_from_wire(audio["output"].get("format")) or PCM24
            self.vad = audio["input"].get("turn_detection")
            self.text_only = self.session.get("output_modalities") == ["text"]
            self.transcribes = bool(audio["input"].get("transcription"))
        else:
            self.in_fmt = format_from_wire(self.session.get("input_audio_format")) or PCM24
            self.out_fmt = format_from_wire(self.session.get("output_audio_format")) or PCM24
            self.vad = self.session.get("turn_detection")
            self.text_only = "audio" not in (self.session.get("modalities") or ["audio"])
            self.transcribes = bool(self.session.get("input_audio_transcription"))
        self.tools = [t for t in self.session.get("tools") or [] if isinstance(t, dict)]
