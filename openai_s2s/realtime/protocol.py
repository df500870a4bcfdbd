"""The Realtime session as a pure state machine (no sockets, no threads, no clocks).

Feed it what the caller sends (:meth:`RealtimeProtocol.client_event`), what the
server sends (:meth:`server_event`) and what the playout buffer reports after a
flush (:meth:`barge_in`); it returns a list of actions for the I/O layer to
carry out, in order. Both Realtime generations live here: ``ga`` (the default,
``/v1/realtime``) and ``beta`` (``OpenAI-Beta: realtime=v1``, Azure's preview). GPT-Live, the
third, is :class:`~.live.LiveProtocol`, with the same actions; ``generations.make_protocol``
picks one.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

import orjson

from . import translate
from ..media.formats import PCM24, AudioFormat, format_from_wire
from ..log import DEBUG, INFO, NOTICE, WARNING

GA, BETA, LIVE = "ga", "beta", "live"
GENERATIONS = (GA, BETA, LIVE)

AUDIO_DELTA = {"response.output_audio.delta", "response.audio.delta"}
_BETA_SESSION_KEYS = {"modalities", "input_audio_format", "output_audio_format", "voice",
                      "turn_detection", "input_audio_transcription"}


# -- actions ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Send:
    """Send this client event to the server."""
    event: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Forward:
    """Fire ``openai_s2s::server_event`` with this body (the server's bytes, untouched)."""
    body: bytes


@dataclasses.dataclass(frozen=True)
class Play:
    """Decode and queue this model audio for the caller."""
    item: Tuple[str, int]
    payload: bytes


@dataclasses.dataclass(frozen=True)
class EndAudio:
    """The item's audio is complete."""
    item: Tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Flush:
    """Empty the playout buffer now, then report to :meth:`RealtimeProtocol.barge_in`.
    ``cancel``: the module must cancel an active response itself (the server will not)."""
    cancel: bool = False


@dataclasses.dataclass(frozen=True)
class OpenUplink:
    """Start streaming caller audio in this format (also sent when the format changes), as
    client events of this type."""
    format: AudioFormat
    event: str = "input_audio_buffer.append"


@dataclasses.dataclass(frozen=True)
class SetOutput:
    """Model audio now arrives in this format."""
    format: AudioFormat


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """The model called a function (its item is done); the module answers it if the tool is one
    of its own, else the ESL application does, from the forwarded event."""
    call_id: str
    name: str
    arguments: str


@dataclasses.dataclass(frozen=True)
class Transcript:
    """A finished transcript of one side: the caller's (input transcription) or the model's."""
    role: str          # "user" or "assistant"
    item_id: str
    text: str


@dataclasses.dataclass(frozen=True)
class PlayDigits:
    """The server asks the transport to play these DTMF digits to the caller (GPT-Live)."""
    digits: str


@dataclasses.dataclass(frozen=True)
class ExpiresAt:
    """The server says when it will end the session (Unix seconds; GPT-Live's ``expires_at``)."""
    unix_time: float


@dataclasses.dataclass(frozen=True)
class ResponseIdle:
    """No response is in progress any more (response.done)."""


@dataclasses.dataclass(frozen=True)
class Log:
    level: str
    message: str
    fold: Optional[str] = None   # a warning a server can repeat at will: folded, by this key


@dataclasses.dataclass(frozen=True)
class End:
    """End the session; ``reason`` goes into the disconnect event."""
    reason: str


Action = Union[Send, Forward, Play, EndAudio, Flush, OpenUplink, SetOutput, ToolCall, Transcript, PlayDigits,
               ExpiresAt, ResponseIdle, Log, End]


class ClientEventError(ValueError):
    """A client event that must not be sent; the message is for the -ERR line."""


MAX_HELD = 16            # response.create events held until the session.updated
BARGE_IN_MODES = ("auto", "always", "never")
OWN_CANCEL = "openai_s2s-cancel-"   # event_id prefix of the cancels the module sends itself
_OWN_CANCELS_KEPT = 16
_ITEMS_KEPT = 8          # items whose received audio is remembered, for truncate's bound
MALFORMED = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


def generation_for_path(path: str, override: str = "auto") -> str:
    """GPT-Live for its path (``/v1/live/sessions``, Azure's ``/openai/v1/live/sessions``); else
    GA unless told otherwise or the path is Azure's preview (``?api-version=`` without /v1/)."""
    if override in GENERATIONS:
        return override
    parts = urlsplit("/" + path.lstrip("/"))
    if parts.path.rstrip("/").endswith("/live/sessions"):
        return LIVE
    if "api-version" in parse_qs(parts.query) and "/v1/" not in parts.path + "/":
        return BETA
    return GA


def _session_generation(session: Any) -> Optional[str]:
    if not isinstance(session, dict):
        return None
    if session.get("type") in ("realtime", "transcription") or "audio" in session:
        return GA
    if _BETA_SESSION_KEYS & session.keys():
        return BETA
    return None


def _session_formats(session: Dict[str, Any], generation: str
                     ) -> Tuple[Optional[AudioFormat], Optional[AudioFormat]]:
    if generation == GA:
        audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
        sides = [audio.get(side) if isinstance(audio.get(side), dict) else {}
                 for side in ("input", "output")]
        return tuple(format_from_wire(s["format"]) if "format" in s else None
                     for s in sides)  # type: ignore[return-value]
    return tuple(format_from_wire(session[k]) if k in session else None
                 for k in ("input_audio_format", "output_audio_format"))  # type: ignore[return-value]


_UNSET = object()


def _turn_detection(session: Dict[str, Any], generation: str) -> Any:
    """The session's turn detection as the server states it: a dict, None (turned off), or
    _UNSET when the session object does not say."""
    if generation == GA:
        audio = session.get("audio")
        side = audio.get("input") if isinstance(audio, dict) else None
        holder = side if isinstance(side, dict) else {}
    else:
        holder = session
    if "turn_detection" not in holder:
        return _UNSET
    value = holder["turn_detection"]
    return value if isinstance(value, dict) or value is None else _UNSET


class RealtimeProtocol:
    def __init__(self, generation: str = GA, hold_response_create: bool = True,
                 idle_timeout_action: str = "forward", barge_in: str = "auto"):
        self.generation = generation
        self.barge_in_mode = barge_in
        # What the server confirmed (session.created/updated). Until it says, the service's
        # default: server VAD that interrupts the response itself when the caller speaks.
        self.turn_detection: Optional[Dict[str, Any]] = {"type": "server_vad", "interrupt_response": True}
        self.own_cancels: List[str] = []   # event_ids of cancels sent, newest last
        self._cancels_sent = 0
        self.received_bytes: Dict[Tuple[str, int], int] = {}   # model audio per item
        self.hold_response_create = hold_response_create
        self.idle_timeout_action = idle_timeout_action
        self.input_format: AudioFormat = PCM24
        self.output_format: AudioFormat = PCM24
        self.uplink_open = False
        self.session_updated = False
        self.response_id: Optional[str] = None      # set while a response is in progress
        self.responses_created = 0
        self.audio_response: Optional[str] = None   # the response whose audio came last
        self.audio_open = False                     # audio has come since its last end
        self.discarded_responses: "set[str]" = set()  # cut off by barge-in: drop their audio
        self.held: List[Dict[str, Any]] = []
        self.end_reason: Optional[str] = None        # why the server is about to close
        self.barge_ins = 0
        self.translations = 0

    # -- from the caller -----------------------------------------------------
    def client_event(self, event: Dict[str, Any]) -> List[Action]:
        """The actions for a client event; raises ClientEventError, changing nothing, if it
        must not be sent. Everything that can fail is done before any state changes."""
        kind = event["type"]
        notes: List[str] = []
        if self.generation == GA:
            event, notes = translate.event_to_ga(event)
        event = self._function_output_as_string(event)
        hold = kind == "response.create" and self.hold_response_create and not self.session_updated
        if kind == "session.update" and not isinstance(event.get("session"), dict):
            raise ClientEventError("session.update: 'session' must be an object")
        if hold and len(self.held) >= MAX_HELD:
            raise ClientEventError(f"{MAX_HELD} response.create are already held until the "
                                   "session.updated arrives")
        formats = _session_formats(event["session"], self.generation) if kind == "session.update" else None
        actions: List[Action] = []
        if notes:
            self.translations += 1
            actions.append(Log(INFO, f"{kind}: beta shape translated to GA: {'; '.join(notes)}"))
        if kind == "session.update":
            actions.append(Send(event))
            actions.extend(self._adopt_formats(formats))
            if not self.uplink_open:
                self.uplink_open = True
                actions.append(OpenUplink(self.input_format))
            return actions
        if hold:
            self.held.append(event)
            actions.append(Log(INFO, "response.create held until the session.updated arrives"))
            return actions
        actions.append(Send(event))
        return actions

    @staticmethod
    def _function_output_as_string(event: Dict[str, Any]) -> Dict[str, Any]:
        item = event.get("item")
        if (event["type"] == "conversation.item.create" and isinstance(item, dict)
                and item.get("type") == "function_call_output"
                and isinstance(item.get("output"), (dict, list))):
            item = dict(item, output=orjson.dumps(item["output"]).decode())
            return dict(event, item=item)
        return event

    def _adopt_formats(self, formats: Tuple[Optional[AudioFormat], Optional[AudioFormat]]) -> List[Action]:
        actions: List[Action] = []
        fmt_in, fmt_out = formats
        if fmt_in is not None and fmt_in != self.input_format:
            self.input_format = fmt_in
            if self.uplink_open:
                actions.append(OpenUplink(fmt_in))
        if fmt_out is not None and fmt_out != self.output_format:
            self.output_format = fmt_out
            actions.append(SetOutput(fmt_out))
        return actions

    # -- from the server -----------------------------------------------------
    def server_event(self, raw: bytes) -> List[Action]:
        event = parse_server_event(raw)
        if isinstance(event, Log):
            return [event]
        kind = event["type"]
        try:
            if kind in AUDIO_DELTA:
                return self._audio_delta(event)
            if kind == "error" and self._own_cancel_refused(event):
                return [Log(DEBUG, "the server had already ended the response the module cancelled")]
            handler = _SERVER_HANDLERS.get(kind)
            return [Forward(raw)] + (handler(self, event) if handler is not None else [])
        except MALFORMED as exc:
            # Nothing a server sends ends the call but a close: a field of the wrong type is
            # this event's problem only. The handlers change state only after their checks.
            return [malformed(kind, exc)]

    def _audio_delta(self, event: Dict[str, Any]) -> List[Action]:
        response_id = event.get("response_id")
        if isinstance(response_id, str) and response_id in self.discarded_responses:
            return []
        payload = delta_audio(event)
        if isinstance(payload, Log):
            return [payload]
        item = _item_key(event)
        count_received(self.received_bytes, item, len(payload))
        self.audio_response = response_id if isinstance(response_id, str) else None
        self.audio_open = True
        return [Play(item, payload)]

    def _on_session_created(self, event: Dict[str, Any]) -> List[Action]:
        seen = _session_generation(event.get("session"))
        actions: List[Action] = []
        if seen is not None and seen != self.generation:
            actions.append(Log(NOTICE, f"server speaks the {seen} Realtime protocol, not "
                                       f"{self.generation} as the path suggested; following the server"))
            self.generation = seen
        self._adopt_turn_detection(event.get("session"))
        return actions

    def _adopt_turn_detection(self, session: Any) -> None:
        if not isinstance(session, dict):
            return
        found = _turn_detection(session, self.generation)
        if found is not _UNSET:
            self.turn_detection = found

    @property
    def server_interrupts(self) -> bool:
        """The server cancels the response itself when the caller starts speaking."""
        td = self.turn_detection
        return td is not None and td.get("interrupt_response", True) is not False

    def _on_session_updated(self, event: Dict[str, Any]) -> List[Action]:
        actions: List[Action] = []
        session = event.get("session")
        if isinstance(session, dict):
            actions.extend(self._adopt_formats(_session_formats(session, self.generation)))
            self._adopt_turn_detection(session)
        if not self.session_updated:
            self.session_updated = True
            if self.held:
                actions.append(Log(DEBUG, f"releasing {len(self.held)} held response.create"))
                actions.extend(Send(e) for e in self.held)
                self.held = []
        return actions

    def _on_response_created(self, event: Dict[str, Any]) -> List[Action]:
        response = event.get("response")
        if isinstance(response, dict):
            self.responses_created += 1
            response_id = response.get("id")
            self.response_id = response_id if isinstance(response_id, str) and response_id else "unknown"
        return []

    def _on_response_done(self, event: Dict[str, Any]) -> List[Action]:
        response = event.get("response")
        done_id = response.get("id") if isinstance(response, dict) else None
        if done_id in (self.response_id, None) or not isinstance(response, dict):
            self.response_id = None
        # A response can end without its audio-done event (cancelled, failed, cut short):
        # its audio is complete all the same, or playout would wait for more for ever.
        actions: List[Action] = []
        if self.audio_open and (done_id is None or done_id == self.audio_response
                                or self.audio_response is None):
            self.audio_response, self.audio_open = None, False
            actions.append(EndAudio(("", 0)))
        if self.response_id is None:
            actions.append(ResponseIdle())
        return actions

    def _on_output_item_done(self, event: Dict[str, Any]) -> List[Action]:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise ValueError("function_call item without string call_id, name and arguments")
        return [ToolCall(call_id, name, arguments)]

    def _on_audio_done(self, event: Dict[str, Any]) -> List[Action]:
        item = _item_key(event)
        self.audio_open = False
        return [EndAudio(item)]

    @staticmethod
    def _transcript(role: str, field: str) -> Any:
        def handle(self: "RealtimeProtocol", event: Dict[str, Any]) -> List[Action]:
            item_id, text = event.get("item_id"), event.get(field)
            if not (isinstance(item_id, str) and isinstance(text, str)):
                raise ValueError(f"transcript without string item_id and {field}")
            return [Transcript(role, item_id, text)]
        return handle

    def _on_speech_started(self, event: Dict[str, Any]) -> List[Action]:
        # With interrupt_response the server cancels the response itself: a cancel of ours
        # would come after and be answered response_cancel_not_active. Without it the session
        # chose not to interrupt the model, unless barge-in is "always".
        mode = self.barge_in_mode
        if mode == "never":
            return []
        if self.server_interrupts:
            return [Flush(cancel=False)]
        return [Flush(cancel=True)] if mode == "always" else []

    def _own_cancel_refused(self, event: Dict[str, Any]) -> bool:
        """An error that only says the module's own cancel found the response already over
        (the server ended it first): not the caller's business."""
        error = event.get("error")
        if not isinstance(error, dict) or error.get("code") != "response_cancel_not_active":
            return False
        event_id = error.get("event_id")
        if event_id in self.own_cancels:
            self.own_cancels.remove(event_id)
            return True
        return event_id is None and bool(self.own_cancels)

    def _on_error(self, event: Dict[str, Any]) -> List[Action]:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        code, message = error.get("code"), error.get("message", "")
        actions: List[Action] = [Log(WARNING, f"server error {str(code)[:64]}: {str(message)[:300]}",
                                     fold="error")]
        if code == "session_expired":
            self.end_reason = "session_expired"
        elif code == "beta_api_shape_disabled":
            actions.append(Log(WARNING, "the server refuses the beta shape: use a GA path "
                                        "(/v1/realtime?model=...) or set openai_s2s_protocol=ga"))
        if self.held and not self.session_updated:
            # A refused session.update never brings session.updated: do not hold forever.
            actions.append(Log(NOTICE, f"releasing {len(self.held)} held response.create after an error"))
            actions.extend(Send(e) for e in self.held)
            self.held = []
        return actions

    def _on_idle_timeout(self, event: Dict[str, Any]) -> List[Action]:
        if self.idle_timeout_action == "end":
            self.end_reason = "idle_timeout"
            return [End("idle_timeout")]
        return []

    # -- from the playout buffer ---------------------------------------------
    def barge_in(self, had_audio: bool, item: Optional[Tuple[str, int]], heard_ms: int,
                 cancel: bool = False) -> List[Action]:
        """After a Flush: cancel (when asked and a response is active), truncate what was cut
        off, and drop the rest of the response's audio."""
        actions: List[Action] = []
        if cancel and self.response_id is not None:
            self._cancels_sent += 1
            event_id = f"{OWN_CANCEL}{self._cancels_sent}"
            command: Dict[str, Any] = {"type": "response.cancel", "event_id": event_id}
            if self.response_id != "unknown":
                command["response_id"] = self.response_id
            actions.append(Send(command))
            self.own_cancels.append(event_id)
            del self.own_cancels[:-_OWN_CANCELS_KEPT]
        if not had_audio:
            return actions
        self.barge_ins += 1
        cut = self.response_id or self.audio_response
        if cut is not None:
            # The server may stream a little more of a response it is cancelling.
            if len(self.discarded_responses) >= 64:   # one per barge-in: keep the recent ones
                self.discarded_responses.clear()
            self.discarded_responses.add(cut)
        if item is not None and item[0] != "None":
            # The service refuses an audio_end_ms beyond the audio it sent for the item; the
            # caller may have heard padding past it (the last partial frame is filled out).
            end_ms = min(heard_ms, self.received_ms(item))
            actions.append(Send({"type": "conversation.item.truncate", "item_id": item[0],
                                 "content_index": item[1], "audio_end_ms": end_ms}))
        actions.append(Log(DEBUG, f"barge-in: playout flushed after {heard_ms} ms of {item}"))
        return actions

    def received_ms(self, item: Tuple[str, int]) -> int:
        """Milliseconds of model audio received for ``item``, rounded down."""
        fmt = self.output_format
        bytes_per_second = fmt.rate * (2 if fmt.name == "pcm" else 1)
        return self.received_bytes.get(item, 0) * 1000 // bytes_per_second


def parse_server_event(raw: bytes) -> Union[Dict[str, Any], Log]:
    """A server frame as an event with a string type, or the warning that it is none."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Log(WARNING, f"server sent a frame that is not JSON ({len(raw)} bytes); ignored", fold="json")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return Log(WARNING, "server sent JSON without a type; ignored", fold="json")
    return event


def malformed(kind: str, exc: BaseException) -> Log:
    return Log(WARNING, f"dropped a malformed {kind[:64]!r} from the server ({type(exc).__name__}: "
                        f"{str(exc)[:120]})", fold="malformed")


def delta_audio(event: Dict[str, Any]) -> Union[bytes, Log]:
    """An audio delta's bytes, or the warning that its ``delta`` is not base64."""
    delta = event.get("delta")
    if not isinstance(delta, str):
        return Log(WARNING, "audio delta without base64 'delta'; ignored", fold="delta")
    try:
        return base64.b64decode(delta, validate=True)
    except binascii.Error:
        return Log(WARNING, "audio delta with bad base64; ignored", fold="delta")


def count_received(received: Dict[Tuple[str, int], int], item: Tuple[str, int], size: int) -> None:
    """Add ``size`` bytes of model audio to ``item``'s count, keeping the newest items only."""
    if item not in received and len(received) >= _ITEMS_KEPT:
        del received[next(iter(received))]
    received[item] = received.get(item, 0) + size


def _item_key(event: Dict[str, Any]) -> Tuple[str, int]:
    """(item_id, content_index) of an audio event; ValueError if either has the wrong type."""
    item_id, index = event.get("item_id"), event.get("content_index") or 0
    if not isinstance(item_id, (str, type(None))) or not isinstance(index, int) or isinstance(index, bool) \
            or not 0 <= index < 1 << 16:
        raise ValueError("item_id must be a string and content_index a small integer")
    return str(item_id), index


_SERVER_HANDLERS = {
    "session.created": RealtimeProtocol._on_session_created,
    "session.updated": RealtimeProtocol._on_session_updated,
    "response.created": RealtimeProtocol._on_response_created,
    "response.done": RealtimeProtocol._on_response_done,
    "response.output_item.done": RealtimeProtocol._on_output_item_done,
    "response.output_audio.done": RealtimeProtocol._on_audio_done,
    "response.audio.done": RealtimeProtocol._on_audio_done,
    "input_audio_buffer.speech_started": RealtimeProtocol._on_speech_started,
    "input_audio_buffer.timeout_triggered": RealtimeProtocol._on_idle_timeout,
    "error": RealtimeProtocol._on_error,
    "conversation.item.input_audio_transcription.completed": RealtimeProtocol._transcript("user", "transcript"),
    "response.output_audio_transcript.done": RealtimeProtocol._transcript("assistant", "transcript"),
    "response.audio_transcript.done": RealtimeProtocol._transcript("assistant", "transcript"),
    "response.output_text.done": RealtimeProtocol._transcript("assistant", "text"),
    "response.text.done": RealtimeProtocol._transcript("assistant", "text"),
}

