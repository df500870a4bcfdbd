"""One connection's side of the Realtime protocol, apart from how bytes get to and from it.

:class:`Conversation` takes client events (JSON bytes) and answers with server events, which
it queues in ``outbox`` as JSON bytes; :class:`~.connection.Connection` adds the websocket
that reads the events in and sends the queue out, and runs the streamed responses.
"""
from __future__ import annotations

import binascii
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np
import orjson

from . import audio, responses
from .faults import Fault
from .session import ServerOptions, SessionState, new_id
from .vad import EnergyVad, SpeechStarted, SpeechStopped

# A truncate of an item the server does not know. Not checked against the service: the code
# is the one clients are seen to expect from it; the wording is this server's.
UNKNOWN_ITEM_CODE = "item_truncate_invalid_item_id"
UNKNOWN_ITEM_MESSAGE = "Error truncating item: the item with id '{}' does not exist."


class Conversation:
    def __init__(self, server: ServerOptions, fault: Optional[str]):
        self.server = server
        self.fault = fault                     # as it was set on the server when this one came in
        self.faults = Fault.parse(fault)
        self.path = ""
        self.headers: Dict[str, str] = {}      # the upgrade request's, names in lower case
        self.generation = "ga"
        self.received: List[Dict[str, Any]] = []   # filled only when the server records
        # counted whether or not it records: input_audio_buffer.append events taken, and the
        # audio bytes they carried (base64-decoded, in the wire format: what the client sent)
        self.appends = 0
        self.audio_bytes = 0
        self.sent: List[Dict[str, Any]] = []
        self.truncations: List[Dict[str, Any]] = []
        self.closed = False
        self.close_code: Optional[int] = None
        self.stopped = False                   # closing: nothing more goes out
        self.outbox: Deque[bytes] = deque()   # server events as JSON, for the I/O side to send
        self.events_sent = 0
        self.state = SessionState(self.generation)
        self.vad = EnergyVad()
        self.items: List[Dict[str, Any]] = []
        self.buffer: List[np.ndarray] = []     # uncommitted input audio
        self.last_turn = np.zeros(0, np.int16)  # the caller's last turn, at 24 kHz
        self.assistant_audio_ms: Dict[str, int] = {}
        self.response: Optional[responses.Run] = None
        self.idle_from: Optional[int] = None   # input ms when the last reply had played out

    @property
    def session(self) -> Dict[str, Any]:
        return self.state.session

    def counters(self) -> Dict[str, Any]:
        """What this connection has taken in, for the stats page and load tests."""
        return {"path": self.path, "generation": self.generation, "closed": self.closed,
                "appends": self.appends, "audio_bytes": self.audio_bytes,
                "events_sent": self.events_sent}

    @property
    def input_ms(self) -> int:
        """How much input audio has come: the clock for turns and the idle timeout."""
        return self.vad.audio_ms

    # what the I/O side provides --------------------------------------------------------
    def run_response(self, run: responses.Run, steps: responses.Steps) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Cut a streamed response's wait short (cancel, close)."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    # out -------------------------------------------------------------------------------
    def send_event(self, kind: str, **fields: Any) -> None:
        if self.stopped:
            return
        event = {"type": kind, "event_id": new_id("event"), **fields}
        if self.server.record:
            self.sent.append(event)
        self.outbox.append(orjson.dumps(event))
        self.events_sent += 1
        if self.faults.close_after is not None and self.events_sent >= self.faults.close_after:
            self.close(1011, "injected fault")

    def error(self, code: str, message: str, event_id: Optional[str] = None,
              kind: str = "invalid_request_error", param: Optional[str] = None) -> None:
        error: Dict[str, Any] = {"type": kind, "code": code, "message": message}
        if param:
            error["param"] = param
        if isinstance(event_id, str) and event_id:
            error["event_id"] = event_id
        self.send_event("error", error=error)

    def begin(self) -> None:
        """The first event of every connection."""
        self.state = SessionState(self.generation)
        self.send_event("session.created", session=self.state.start())

    # in --------------------------------------------------------------------------------
    def handle(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error("invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_event", "Events must be objects with a type.")
            return
        if self.server.record:
            self.received.append(event)
        handler: Optional[Callable[[Dict[str, Any]], None]] = \
            getattr(self, "on_" + event["type"].replace(".", "_"), None)
        if handler is None:
            self.error("invalid_event", f"Unknown event type {event['type']!r}.", event.get("event_id"))
            return
        handler(event)

    def on_session_update(self, event: Dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            self.error("invalid_value", "session must be an object", event.get("event_id"))
            return
        if self.state.update(update) is not None:
            self.error("beta_api_shape_disabled", "The Realtime Beta API is no longer supported. "
                       "Please use the GA API shape.", event.get("event_id"))
            return
        self.send_event("session.updated", session=self.state.session)

    def on_input_audio_buffer_append(self, event: Dict[str, Any]) -> None:
        fmt = self.state.in_fmt
        try:
            # binascii's strict mode is b64decode(validate=True) without its regular expression
            wire = binascii.a2b_base64(event.get("audio", ""), strict_mode=True)
        except (ValueError, TypeError):
            self.error("invalid_value", "audio is not base64", event.get("event_id"))
            return
        self.appends += 1
        self.audio_bytes += len(wire)
        samples = audio.decode(fmt, wire)
        self.buffer.append(samples)
        for found in self.vad.feed(samples, fmt.rate, self.server.vad_threshold, self.state.silence_ms()):
            if isinstance(found, SpeechStarted):
                self._speech_started(found)
            else:
                self._speech_stopped(found)
        self._check_idle()

    def on_input_audio_buffer_commit(self, event: Dict[str, Any]) -> None:
        if not self.buffer:
            self.error("input_audio_buffer_commit_empty", "buffer too small", event.get("event_id"))
            return
        self.last_turn = audio.resample(np.concatenate(self.buffer), self.state.in_fmt.rate, 24000)
        item_id = new_id("item")
        self._commit(item_id)
        self._transcribe(item_id)

    def on_input_audio_buffer_clear(self, event: Dict[str, Any]) -> None:
        self.buffer = []
        self.vad.reset_turn()
        self.send_event("input_audio_buffer.cleared")

    def on_conversation_item_create(self, event: Dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            self.error("invalid_value", "item must be an object", event.get("event_id"))
            return
        if item.get("type") == "function_call_output" and not isinstance(item.get("output"), str):
            self.error("invalid_type", "item.output must be a string", event.get("event_id"))
            return
        item = dict(item, id=item.get("id") or new_id("item"), object="realtime.item", status="completed")
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        self._item_added(item, previous)

    def on_conversation_item_truncate(self, event: Dict[str, Any]) -> None:
        refusal = self._truncate_refusal(event)
        if refusal is not None:
            code, message, param = refusal
            self.error(code, message, event.get("event_id"), param=param)
            return
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        self.truncations.append(event)
        self.send_event("conversation.item.truncated", item_id=item_id,
                        content_index=event.get("content_index", 0), audio_end_ms=end_ms)

    def on_response_create(self, event: Dict[str, Any]) -> None:
        responses.start(self, event.get("response") or {})

    def _truncate_refusal(self, event: Dict[str, Any]) -> Optional[Tuple[str, str, Optional[str]]]:
        """Why a truncate is refused, as (code, message, param); None when it is not."""
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        sent_ms = self.assistant_audio_ms.get(item_id) if isinstance(item_id, str) else None
        bad_ms = not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0
        if self.server.lenient:
            if sent_ms is None or bad_ms or end_ms > sent_ms:
                return "invalid_value", f"audio_end_ms {end_ms} is beyond the audio of {item_id}", None
            return None
        if sent_ms is None:
            return UNKNOWN_ITEM_CODE, UNKNOWN_ITEM_MESSAGE.format(item_id), "item_id"
        if bad_ms:
            return "invalid_value", "audio_end_ms must be a non-negative integer.", "audio_end_ms"
        if end_ms > sent_ms:
            # the service's wording, as clients report it
            return "invalid_value", f"Audio content of {sent_ms}ms is already shorter than {end_ms}ms", \
                "audio_end_ms"
        return None

    def on_response_cancel(self, event: Dict[str, Any]) -> None:
        if self.response is None:
            self.error("response_cancel_not_active", "Cancellation failed: no active response found",
                       event.get("event_id"))
            return
        self._cancel("client_cancelled")

    def on_output_audio_buffer_clear(self, event: Dict[str, Any]) -> None:
        self._cancel("client_cancelled")

    # turns -----------------------------------------------------------------------------
    def _speech_started(self, found: SpeechStarted) -> None:
        self.send_event("input_audio_buffer.speech_started", item_id=found.item_id,
                        audio_start_ms=found.audio_start_ms)
        if self.response is not None and self.state.interrupts_response() and not self.server.lenient:
            self._cancel("turn_detected")
        self.idle_from = None   # after the cancel re-armed it: the idle timeout waits for the next reply

    def _speech_stopped(self, found: SpeechStopped) -> None:
        self.last_turn = found.turn
        self.send_event("input_audio_buffer.speech_stopped", item_id=found.item_id,
                        audio_end_ms=found.audio_end_ms)
        self._commit(found.item_id)
        self._transcribe(found.item_id)
        if self.state.creates_response():
            responses.start(self, {})

    def response_ended(self, run: responses.Run) -> None:
        """The idle timeout counts from when the caller has heard the reply out: its audio
        plays at real time from its start, however fast it was sent."""
        self.idle_from = max(self.input_ms, run.started_ms + run.audio_ms)

    def _check_idle(self) -> None:
        """After ``idle_timeout_ms`` of input with no speech since the last reply played out,
        as the service does: timeout_triggered, the quiet audio committed, and a response."""
        timeout = self.state.idle_timeout_ms()
        if timeout is None or self.idle_from is None or self.response is not None \
                or self.vad.speech_item is not None or self.input_ms < self.idle_from + timeout:
            return
        start, self.idle_from = self.idle_from, None
        item_id = new_id("item")
        self.send_event("input_audio_buffer.timeout_triggered", item_id=item_id,
                        audio_start_ms=start, audio_end_ms=self.input_ms)
        self.last_turn = np.zeros(0, np.int16)   # nothing was said: the reply is not an echo of quiet
        self._commit(item_id)
        if self.state.creates_response():
            responses.start(self, {})

    # items -----------------------------------------------------------------------------
    def _commit(self, item_id: str) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.buffer = []
        item = {"id": item_id, "type": "message", "role": "user", "status": "completed",
                "object": "realtime.item", "content": [{"type": "input_audio", "transcript": None}]}
        self.items.append(item)
        self.send_event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        self._item_added(item, previous)

    def _transcribe(self, item_id: str) -> None:
        """The caller's turn (``last_turn``) transcribed, as the service does when the session
        asks for input transcription."""
        if not self.state.transcribes:
            return
        seconds = len(self.last_turn) / 24000
        self.send_event("conversation.item.input_audio_transcription.completed",
                        item_id=item_id, content_index=0,
                        transcript=f"caller spoke {round(seconds * 1000)} ms",
                        usage={"type": "duration", "seconds": round(seconds, 3)})

    def _item_added(self, item: Dict[str, Any], previous: Optional[str]) -> None:
        if self.generation == "beta":
            self.send_event("conversation.item.created", item=item, previous_item_id=previous)
        else:
            self.send_event("conversation.item.added", item=item, previous_item_id=previous)
            self.send_event("conversation.item.done", item=item, previous_item_id=previous)

    def _cancel(self, reason: str) -> None:
        responses.cancel(self, reason)
        self.wake()
