"""A GPT-Live session (``/v1/live/sessions``) as a pure state machine, beside the Realtime one.

It takes the same inputs and returns the same actions as :class:`~.protocol.RealtimeProtocol`,
so the call layer carries out either without knowing which it has. What differs is the service:

- the client's first event is ``session.start`` (the model goes in it, never in the URL); the
  server answers ``session.started``, and only then does caller audio go up
  (``session.input_audio.append``) and do other commands go (held until then);
- it is full duplex and server-driven: the server mixes its output in real time and decides
  itself when to stop talking. There is no response.cancel and no truncate. Playout follows the
  server: when the caller's words (``session.input_transcript.delta``) come while the model's
  audio is playing, the caller has taken the turn, and what is still queued is flushed;
- transcripts come as deltas with no done event: a side's text ends when the other side speaks;
- tools: a Responses backend's function calls come inside ``response.event``; their outputs go
  back as ``response.item.create`` then ``response.create``;
- ``transport.dtmf.send`` from the server asks the transport (this module) to play a digit.

Realtime-shaped client events are translated (``live_translate``) or refused by name.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple


from . import live_translate as lt
from .live_translate import NoMapping
from .protocol import (Action, ClientEventError, EndAudio, ExpiresAt, Flush, Forward, Log, OpenUplink, Play,
                       PlayDigits, ResponseIdle, Send, SetOutput, ToolCall, Transcript, MALFORMED,
                       RealtimeProtocol, count_received, delta_audio, malformed, parse_server_event)
from .service import DEFAULT_LIVE_DELEGATION_MODEL, DEFAULT_LIVE_MODEL
from ..log import DEBUG, INFO, WARNING
from ..media.formats import PCM24, AudioFormat, live_format_from_wire

LIVE = "live"
APPEND = "session.input_audio.append"
MAX_HELD = 64            # commands held until session.started
_DIGIT = re.compile(r"[0-9*#A-Da-d]")


class LiveProtocol:
    generation = LIVE
    server_interrupts = True   # the server decides itself when the model stops talking

    def __init__(self, barge_in: str = "auto", model: str = DEFAULT_LIVE_MODEL,
                 delegation_model: str = DEFAULT_LIVE_DELEGATION_MODEL):
        self.barge_in_mode = barge_in
        self.model, self.delegation_model = model, delegation_model
        self.input_format: AudioFormat = PCM24
        self.output_format: AudioFormat = PCM24
        self.start_sent = False
        self.started = False          # session.started has come
        self.uplink_open = False
        self.delegation: Optional[str] = None    # client, responses or decisions, once started
        self.history: List[Dict[str, Any]] = []  # text items before session.start: its ``input``
        self.held: List[Dict[str, Any]] = []     # commands between session.start and session.started
        self.input_muted: Optional[bool] = None  # asked for before the session started
        self.response_id: Optional[str] = None   # a Responses backend response in progress
        self.responses_created = 0
        self.end_reason: Optional[str] = None
        self.barge_ins = 0
        self.translations = 0
        self.turn = 0                 # the model's turns: each one's audio is one playout item
        self.model_audio = False      # model audio has come since the caller last spoke
        self.received_bytes: Dict[Tuple[str, int], int] = {}
        self._said: Dict[str, List[str]] = {"user": [], "assistant": []}
        self._speaking: Optional[str] = None     # whose transcript deltas came last

    @property
    def session_updated(self) -> bool:
        return self.started

    # -- from the caller -----------------------------------------------------
    def client_event(self, event: Dict[str, Any]) -> List[Action]:
        """The actions for a client event; raises ClientEventError, changing nothing, if it
        must not be sent. Everything that can fail is done before any state changes."""
        kind = event["type"]
        if kind == "session.start" or (kind == "session.update" and not self.start_sent
                                        and not lt.is_live_update(event.get("session"))):
            return self._start(event)
        if kind == "conversation.item.create" and not self.start_sent:
            return self._remember(event)
        if not self.start_sent:
            raise ClientEventError(f"{kind[:64]}: GPT-Live takes session.start (or a session.update, "
                                   "which becomes it) first")
        if not self.started:
            if len(self.held) >= MAX_HELD:
                raise ClientEventError(f"{MAX_HELD} commands are already held until session.started arrives")
            try:
                self._live_events(event)   # refuse now what would be refused later
            except NoMapping as exc:
                raise ClientEventError(str(exc)) from None
            self.held.append(event)
            return [Log(DEBUG, f"{kind[:64]} held until session.started arrives")]
        return self._translate(event)

    def _translate(self, event: Dict[str, Any]) -> List[Action]:
        kind = event["type"]
        try:
            events, notes = self._live_events(event)
        except NoMapping as exc:
            raise ClientEventError(str(exc)) from None
        actions: List[Action] = []
        if notes:
            self.translations += 1
            actions.append(Log(INFO, f"{kind}: Realtime shape translated to GPT-Live: {'; '.join(notes)}"))
        actions.extend(Send(e) for e in events)
        return actions

    def _live_events(self, event: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], List[str]]:
        kind = event["type"]
        keep = {"event_id": event["event_id"]} if isinstance(event.get("event_id"), str) else {}
        if kind in lt.REFUSED:
            raise NoMapping(f"{kind}: {lt.REFUSED[kind]}")
        if kind == "session.update" and not lt.is_live_update(event.get("session")):
            if not isinstance(event.get("session"), dict):
                raise NoMapping("session.update: 'session' must be an object")
            return lt.session_changes(event["session"], self.delegation)
        if kind == "conversation.item.create":
            item = event.get("item")
            if not isinstance(item, dict):
                raise NoMapping("conversation.item.create: 'item' must be an object")
            if item.get("type") == "function_call_output":
                item = RealtimeProtocol._function_output_as_string(event)["item"]
                return [dict(lt.tool_output(item, self.delegation), **keep)], ["function_call_output->response.item.create"]
            role, text = lt.item_text(item)
            live, note = lt.context_event(role, text)
            return [dict(live, **keep)], [note]
        if kind == "response.create":
            return self._response_create(event, keep)
        if kind == "input_audio_buffer.append":
            return [dict({"type": APPEND, "audio": event.get("audio")}, **keep)], ["->" + APPEND]
        return [event], []   # GPT-Live's own, or unknown to both: the server answers for itself

    def _response_create(self, event: Dict[str, Any], keep: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], List[str]]:
        response = event.get("response")
        instructions = response.get("instructions") if isinstance(response, dict) else None
        if self.delegation == "responses":
            notes = ["response options dropped (the backend's are set at session.start)"] if response else []
            return [dict({"type": "response.create"}, **keep)], notes
        if isinstance(instructions, str) and instructions.strip():
            return ([dict({"type": "session.instructions.append", "content": instructions, "delegation_id": None}, **keep)],
                    ["response.instructions->session.instructions.append (the model decides when to speak)"])
        raise NoMapping("response.create: GPT-Live decides itself when to speak; without Responses delegation "
                        "there is no response.create (give it context with session.instructions.append "
                        "or something to say with session.commentary.append)")

    def _start(self, event: Dict[str, Any]) -> List[Action]:
        if self.start_sent:
            raise ClientEventError("session.start: the session has already started (GPT-Live fixes it at start)")
        session = event.get("session")
        if not isinstance(session, dict):
            raise ClientEventError(f"{event['type']}: 'session' must be an object")
        notes: List[str] = []
        if event["type"] == "session.update":
            try:
                live, notes = lt.session_start(session, self.model, self.delegation_model, self.history)
            except NoMapping as exc:
                raise ClientEventError(str(exc)) from None
            start = {"type": "session.start", "session": live}
            if isinstance(event.get("event_id"), str):
                start["event_id"] = event["event_id"]
        else:
            start = event
            if self.history:
                given = session.get("input") if isinstance(session.get("input"), list) else []
                start = dict(event, session=dict(session, input=given + self.history))
        audio = start["session"].get("audio")
        fmt = live_format_from_wire(audio.get("format")) if isinstance(audio, dict) and "format" in audio else PCM24
        if fmt is None:
            raise ClientEventError("session.start: audio.format is not one GPT-Live has")
        delegation = start["session"].get("delegation")
        self.start_sent = True
        self.history = []
        self.input_format = fmt
        # until session.started confirms it: what was asked for (none is client delegation)
        self.delegation = delegation.get("type") if isinstance(delegation, dict) else "client"
        actions: List[Action] = []
        if notes:
            self.translations += 1
            actions.append(Log(INFO, f"session.update: Realtime shape translated to GPT-Live session.start: "
                                     f"{'; '.join(notes)}"))
        actions.append(Send(start))
        return actions

    def _remember(self, event: Dict[str, Any]) -> List[Action]:
        """A text item before the session starts: it goes into session.start's history."""
        item = event.get("item")
        if not isinstance(item, dict):
            raise ClientEventError("conversation.item.create: 'item' must be an object")
        try:
            role, text = lt.item_text(item)
        except NoMapping as exc:
            raise ClientEventError(str(exc)) from None
        if len(self.history) >= lt.MAX_INPUT_ITEMS:
            raise ClientEventError(f"conversation.item.create: GPT-Live's startup history holds at most "
                                   f"{lt.MAX_INPUT_ITEMS} messages")
        self.history.append(lt.history_item(role, text))
        return [Log(DEBUG, f"{role} text kept for session.start's input")]

    def input_mute(self, muted: bool) -> List[Action]:
        """The caller muted or unmuted (``mute``/``pause``): GPT-Live's own events, which feed the
        model silence and keep the session's clock."""
        if not self.started:
            self.input_muted = muted
            return []
        self.input_muted = None
        return [Send({"type": "session.input_audio.mute" if muted else "session.input_audio.unmute"})]

    # -- from the server -----------------------------------------------------
    def server_event(self, raw: bytes) -> List[Action]:
        event = parse_server_event(raw)
        if isinstance(event, Log):
            return [event]
        kind = event["type"]
        try:
            if kind == "session.output_audio.delta":
                return self._audio_delta(event)
            handler = _SERVER_HANDLERS.get(kind)
            return [Forward(raw)] + (handler(self, event) if handler is not None else [])
        except MALFORMED as exc:
            return [malformed(kind, exc)]

    def _item(self) -> Tuple[str, int]:
        return (f"live-{self.turn}", 0)

    def _audio_delta(self, event: Dict[str, Any]) -> List[Action]:
        payload = delta_audio(event)
        if isinstance(payload, Log):
            return [payload]
        item = self._item()
        count_received(self.received_bytes, item, len(payload))
        self.model_audio = True
        return [Play(item, payload)]

    def _on_started(self, event: Dict[str, Any]) -> List[Action]:
        session = event.get("session")
        if not isinstance(session, dict):
            raise ValueError("session.started without a session object")
        audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
        fmt = live_format_from_wire(audio["format"]) if "format" in audio else self.input_format
        if fmt is None:
            raise ValueError("session.started with an audio format GPT-Live does not have")
        delegation = session.get("delegation")
        actions: List[Action] = []
        if self.started:
            return [Log(WARNING, "a second session.started; ignored")]
        self.started = True
        self.delegation = delegation.get("type") if isinstance(delegation, dict) else "client"
        self.input_format = fmt
        if fmt != self.output_format:
            self.output_format = fmt
            actions.append(SetOutput(fmt))
        self.uplink_open = True
        actions.append(OpenUplink(fmt, APPEND))
        expires = session.get("expires_at")
        if type(expires) in (int, float) and 0 < expires < 1 << 40:
            actions.append(ExpiresAt(float(expires)))
        if self.input_muted is not None:
            actions.extend(self.input_mute(self.input_muted))
        held, self.held = self.held, []
        if held:
            actions.append(Log(DEBUG, f"releasing {len(held)} held command(s)"))
        for command in held:
            try:
                actions.extend(self._translate(command))
            except ClientEventError as exc:   # refused once the delegation was known
                actions.append(Log(WARNING, f"held {command['type'][:64]} not sent: {exc}"))
        return actions

    def _on_updated(self, event: Dict[str, Any]) -> List[Action]:
        session = event.get("session")
        delegation = session.get("delegation") if isinstance(session, dict) else None
        if isinstance(delegation, dict) and isinstance(delegation.get("type"), str):
            self.delegation = delegation["type"]
        return []

    def _said_by(self, role: str, delta: str) -> List[Action]:
        """A side's transcript delta: the other side's text so far is one finished turn."""
        actions: List[Action] = []
        if self._speaking not in (None, role):
            actions.extend(self._finish(self._speaking))
        self._speaking = role
        self._said[role].append(delta)
        return actions

    def _finish(self, role: str) -> List[Action]:
        text = "".join(self._said[role]).strip()
        self._said[role] = []
        return [Transcript(role, f"live-{self.turn}-{role}", text)] if text else []

    def _on_input_transcript(self, event: Dict[str, Any]) -> List[Action]:
        delta = event.get("delta")
        if not isinstance(delta, str):
            raise ValueError("transcript delta without a string delta")
        actions = self._said_by("user", delta)
        if delta.strip() and self.model_audio:
            # The caller's words while the model's audio plays: the caller has the turn. What the
            # server had already mixed ahead is still queued here; the next audio is a new turn.
            # The flush comes first: the server may have stopped already and the queue drained,
            # and a model cut off this way was interrupted all the same.
            self.model_audio = False
            if self.barge_in_mode != "never":
                actions.append(Flush(cancel=False))
            actions.append(EndAudio(self._item()))
            self.turn += 1
        return actions

    def _on_output_transcript(self, event: Dict[str, Any]) -> List[Action]:
        delta = event.get("delta")
        if not isinstance(delta, str):
            raise ValueError("transcript delta without a string delta")
        return self._said_by("assistant", delta)

    def _on_closed(self, event: Dict[str, Any]) -> List[Action]:
        reason = event.get("reason")
        reason = reason[:64] if isinstance(reason, str) else "unknown"
        self.end_reason = "session_expired" if reason == "expired" else f"session closed: {reason}"
        actions: List[Action] = [Log(INFO, f"GPT-Live closed the session: {reason}")]
        for role in ("user", "assistant"):
            actions.extend(self._finish(role))
        if self.model_audio:
            actions.append(EndAudio(self._item()))
        return actions

    def _on_error(self, event: Dict[str, Any]) -> List[Action]:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        code, message = error.get("code"), error.get("message", "")
        return [Log(WARNING, f"server error {str(code)[:64]}: {str(message)[:300]}", fold="error")]

    def _on_info(self, event: Dict[str, Any]) -> List[Action]:
        return [Log(INFO, f"server info {str(event.get('code'))[:64]}: {str(event.get('message'))[:300]}",
                    fold="info")]

    def _on_response_event(self, event: Dict[str, Any]) -> List[Action]:
        """A Responses backend's streaming event, nested: its function calls are tool calls."""
        inner = event.get("event")
        if not isinstance(inner, dict):
            raise ValueError("response.event without an event object")
        kind = inner.get("type")
        response = inner.get("response") if isinstance(inner.get("response"), dict) else {}
        if kind == "response.created":
            self.responses_created += 1
            rid = response.get("id")
            self.response_id = rid if isinstance(rid, str) and rid else "unknown"
            return []
        if kind in ("response.done", "response.completed", "response.failed", "response.incomplete",
                    "response.cancelled"):
            self.response_id = None
            return [ResponseIdle()]
        item = inner.get("item")
        if kind == "response.output_item.done" and isinstance(item, dict) and item.get("type") == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
            if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
                raise ValueError("function_call item without string call_id, name and arguments")
            return [ToolCall(call_id, name, arguments)]
        return []

    def _on_dtmf_send(self, event: Dict[str, Any]) -> List[Action]:
        digit = event.get("event")
        if not isinstance(digit, str) or not _DIGIT.fullmatch(digit):
            return [Log(WARNING, f"transport.dtmf.send with no digit the switch can play "
                                 f"({str(digit)[:16]!r}); ignored", fold="dtmf")]
        return [PlayDigits(digit.upper())]

    # -- from the playout buffer ---------------------------------------------
    def barge_in(self, had_audio: bool, item: Optional[Tuple[str, int]], heard_ms: int,
                 cancel: bool = False) -> List[Action]:
        """After a Flush: nothing to tell the server (it mixes in real time and knows what went
        out); a new turn starts for whatever audio comes next."""
        if not had_audio:
            return []
        self.barge_ins += 1
        if self.model_audio:   # the module's own barge-in (the command), not the server's turn change
            self.model_audio = False
            self.turn += 1
        return [Log(DEBUG, f"barge-in: playout flushed after {heard_ms} ms of {item}")]

    def received_ms(self, item: Tuple[str, int]) -> int:
        fmt = self.output_format
        bytes_per_second = fmt.rate * (2 if fmt.name == "pcm" else 1)
        return self.received_bytes.get(item, 0) * 1000 // bytes_per_second


_SERVER_HANDLERS = {
    "session.started": LiveProtocol._on_started,
    "session.updated": LiveProtocol._on_updated,
    "session.input_transcript.delta": LiveProtocol._on_input_transcript,
    "session.output_transcript.delta": LiveProtocol._on_output_transcript,
    "session.closed": LiveProtocol._on_closed,
    "error": LiveProtocol._on_error,
    "info": LiveProtocol._on_info,
    "response.event": LiveProtocol._on_response_event,
    "transport.dtmf.send": LiveProtocol._on_dtmf_send,
}
