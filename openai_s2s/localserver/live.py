"""One connection's side of OpenAI's GPT-Live API (``/v1/live/sessions``), apart from how
bytes get to and from it: client events (JSON bytes) in, server events queued in ``outbox``.
:class:`~.live_connection.LiveConnection` adds the websocket, the timers and the mixer's pace.

What it does, from the openai package's ``openai.types.live`` (3.57) and what a third party
saw on the wire (2026-10-07); what neither says is marked inferred where it is done:

* nothing is sent until the client sends ``session.start``, which must come first and once,
  is checked strictly (unknown fields at any level refused) and is answered by
  ``session.started`` about a second later (``STARTUP_S``, scaled by ``speed``);
* the caller's audio is judged by the energy VAD; while the caller speaks,
  ``session.input_transcript.delta`` every ``WORD_MS`` of speech, the word being the server's
  reply mode ("echo", "tone", "delegate"); when the utterance ends the server answers as the
  Realtime server's reply modes do (an echo, a tone), through the mixer (:mod:`.live_output`),
  paced in real time; the caller's speech stops that output at once, announced by nothing;
* an utterance whose transcript holds the word "delegate" (reply mode ``delegate``) is
  delegated instead (:mod:`.live_delegation`): ``session.delegation.created``, to the client
  or to the Responses backend (:mod:`.live_responses`), and an automatic spoken
  acknowledgement after ``acknowledgement_delay_ms`` unless a thinking or commentary append
  comes first;
* mute and unmute, context appends (a commentary is spoken), audio fixtures, ``session.update``
  of delegation and triggers only, ``session.close``, usage every 15 s of session time.

The session timeline is the input audio's clock, as the Realtime server's turns are: on a
call the audio comes in real time, so it runs with the session's time.
"""
from __future__ import annotations

import base64
import binascii
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np
import orjson

from ..media.formats import PCM24, AudioFormat
from ..realtime import service
from . import audio, live_session
from .faults import Fault
from .live_delegation import Cancellable, Delegating
from .live_output import Mixer, Speech
from .live_responses import Backend
from .live_schema import Problem
from .live_shapes import CLIENT_EVENTS
from .session import ServerOptions, new_id
from .vad import EnergyVad, SpeechStarted, SpeechStopped

STARTUP_S = 1.0            # session.start to session.started, as observed (~1 s)
SILENCE_MS = 500           # quiet that ends an utterance: Live has no turn detection to set (inferred)
WORD_MS = 300              # one input transcript word per this much speech
USAGE_EVERY_MS = 15000     # "usage updated about every 15 s" (observed)
CONTEXT_MAX_TOKENS = 500   # an append's content, estimated as live_session.estimated_tokens does
FIXTURE_MAX_S = 30
TRIGGER_WORD = "delegate"
MS_PER_CHAR = 60           # a spoken text's tone lasts this much per character
APPENDS = ("session.instructions.append", "session.thinking.append", "session.commentary.append")


class Utterance:
    """The caller's speech in progress: where it began and how far it is transcribed."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = self.transcribed_ms = start_ms
        self.words: List[str] = []


def _client_event_id(event: Optional[Dict[str, Any]]) -> Dict[str, str]:
    event_id = (event or {}).get("event_id")
    return {"client_event_id": event_id} if isinstance(event_id, str) else {}


class LiveConversation(Delegating):
    generation = "live"

    def __init__(self, server: ServerOptions, fault: Optional[str]):
        self.server = server
        self.fault = fault
        self.faults = Fault.parse(fault)
        self.path = ""
        self.headers: Dict[str, str] = {}
        self.received: List[Dict[str, Any]] = []   # filled only when the server records
        self.sent: List[Dict[str, Any]] = []
        # counted whether or not it records: session.input_audio.append events taken, and the
        # audio bytes they carried (base64-decoded, in the wire format), as for Realtime
        self.appends = 0
        self.audio_bytes = 0
        self.closed = False
        self.close_code: Optional[int] = None
        self.stopped = False
        self.outbox: Deque[bytes] = deque()
        self.events_sent = 0
        self.phase = "new"                     # new, starting, started, closed
        self.session: Dict[str, Any] = {}      # the session resource
        self.fmt: AudioFormat = PCM24
        self.vad = EnergyVad()
        self.mixer = Mixer(PCM24.rate)
        self.muted = False
        self.utterance: Optional[Utterance] = None
        self.delegations: Dict[str, str] = {}   # id -> target
        self.backend: Optional[Backend] = None
        self.fixture: Optional[Dict[str, Any]] = None   # the play command of the fixture playing
        self.acks: List[Cancellable] = []       # pending spoken acknowledgements
        self.next_usage_ms = USAGE_EVERY_MS

    def counters(self) -> Dict[str, Any]:
        return {"path": self.path, "generation": self.generation, "closed": self.closed,
                "appends": self.appends, "audio_bytes": self.audio_bytes,
                "events_sent": self.events_sent}

    @property
    def timeline_ms(self) -> int:
        return self.vad.audio_ms

    # what the I/O side provides --------------------------------------------------------
    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        raise NotImplementedError

    def output_ready(self) -> None:
        """The mixer has something to send: its driver should look."""

    def session_began(self) -> None:
        """``session.started`` is queued (the I/O side arms the faults that follow it)."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    # out -------------------------------------------------------------------------------
    def send_event(self, kind: str, with_id: bool = True, **fields: Any) -> None:
        """``with_id`` False for the one event that has no event_id: session.output_audio.delta."""
        if self.stopped:
            return
        event = {"type": kind, "event_id": new_id("event"), **fields} if with_id else {"type": kind, **fields}
        if self.server.record:
            self.sent.append(event)
        self.outbox.append(orjson.dumps(event))
        self.events_sent += 1
        if self.faults.close_after is not None and self.events_sent >= self.faults.close_after:
            self.close(1011, "injected fault")

    def refuse(self, event: Optional[Dict[str, Any]], code: str, message: str,
               param: Optional[str] = None, kind: str = "invalid_request_error") -> None:
        """An ``error`` (openai.types.live.error): its client_event_id names the command."""
        self.send_event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                        "client_event_id": _client_event_id(event).get("client_event_id")})

    def _refuse_problem(self, event: Optional[Dict[str, Any]], problem: Problem) -> None:
        self.refuse(event, problem.code, problem.message, problem.param)

    # in --------------------------------------------------------------------------------
    def handle(self, data: bytes) -> None:
        if self.stopped:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.refuse(None, "invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.refuse(event if isinstance(event, dict) else None, "invalid_type",
                        "A client event must be an object with a string type.", "type")
            return
        if self.server.record:
            self.received.append(event)
        kind = event["type"]
        if self.phase != "started" and kind != "session.start":
            # the first message must be session.start (observed); inferred: the same while it starts
            waiting = "wait for session.started" if self.phase == "starting" else "send session.start first"
            self.refuse(event, "session_not_started", f"The session has not started: {waiting}, "
                        f"then send {kind}.")
            return
        shape = CLIENT_EVENTS.get(kind)
        if shape is None:
            # "an unknown client event is refused with an error that lists the supported
            # client event types" (observed); the words are the Realtime service's
            supported = ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
            self.refuse(event, "invalid_value", f"Invalid value: '{kind}'. Supported values are: "
                        f"{supported}.", "type")
            return
        # a startup field in session.update is named as immutable before the schema refuses it
        problem = (live_session.update_problem(event.get("session")) if kind == "session.update" else None) \
            or shape.check(event, "")
        if problem is not None:
            self._refuse_problem(event, problem)
            return
        getattr(self, "on_" + kind.replace(".", "_"))(event)

    # the session -----------------------------------------------------------------------
    def on_session_start(self, event: Dict[str, Any]) -> None:
        if self.phase != "new":
            self.refuse(event, "session_already_started", "session.start may be sent once: this session "
                        "has already " + ("started." if self.phase == "started" else "been started."))
            return
        config = event["session"]
        problem = live_session.start_problem(config)
        if problem is not None:
            self._refuse_problem(event, problem)
            return
        limit = self.faults.expire_after if self.faults.expire_after is not None \
            else service.session_limit(self.path)   # inferred: the Realtime service's limits
        self.session = live_session.resolve(config, new_id("sess"), int(time.time() + limit + 0.999))
        self.fmt = live_session.audio_format(self.session)
        self.mixer = Mixer(self.fmt.rate)
        if self.session["delegation"]["type"] == "responses":
            self.backend = Backend(self.session["delegation"]["responses"])
        self.phase = "starting"
        speed = self.server.speed
        self.schedule(STARTUP_S / speed if speed > 0 else 0.0, lambda: self._started(event))

    def _started(self, event: Dict[str, Any]) -> None:
        if self.phase != "starting":
            return
        self.phase = "started"
        self.send_event("session.started", session=self.session, **_client_event_id(event))
        self.session_began()

    def on_session_update(self, event: Dict[str, Any]) -> None:
        update = event["session"]
        problem = live_session.apply_update(self.session, update)
        if problem is not None:
            self._refuse_problem(event, problem)
            return
        if self.backend is not None:
            self.backend.config = self.session["delegation"]["responses"]
        self.send_event("session.updated", session=self.session, **_client_event_id(event))

    def on_session_close(self, event: Dict[str, Any]) -> None:
        self.finish("close_requested", event)

    def finish(self, reason: str, event: Optional[Dict[str, Any]] = None) -> None:
        """``session.closed`` with its reason, final snapshot and usage, then close 1000."""
        if self.phase == "closed":
            return
        self.phase = "closed"
        self.mixer.stop()
        self._cancel_acks()
        self.send_event("session.closed", reason=reason, session=self.session,
                        usage=self._usage(), **_client_event_id(event))
        self.close(1000)

    def _usage(self) -> Dict[str, Any]:
        return {"seconds": self.timeline_ms // 1000}

    def _check_usage(self) -> None:
        while self.timeline_ms >= self.next_usage_ms:
            self.send_event("session.usage.updated", usage={"seconds": self.next_usage_ms // 1000})
            self.next_usage_ms += USAGE_EVERY_MS

    # input audio -----------------------------------------------------------------------
    def on_session_input_audio_append(self, event: Dict[str, Any]) -> None:
        wire = self._audio(event, "audio")
        if wire is None:
            return
        self.appends += 1
        self.audio_bytes += len(wire)
        samples = audio.decode(self.fmt, wire)
        if self.muted or self.fixture is not None:
            # muted: "sends silence to the model"; during a fixture input "is dropped"
            samples = np.zeros_like(samples)
        for found in self.vad.feed(samples, self.fmt.rate, self.server.vad_threshold, SILENCE_MS):
            if isinstance(found, SpeechStarted):
                self._caller_started(found)
            else:
                self._caller_stopped(found)
        if self.utterance is not None:
            self._transcribe(self.vad.audio_ms - self.vad.silent_ms, final=False)
        self._check_usage()

    def _audio(self, event: Dict[str, Any], key: str) -> Optional[bytes]:
        try:
            return base64.b64decode(event[key], validate=True)
        except (binascii.Error, ValueError):
            self.refuse(event, "invalid_value", f"Invalid '{key}': not valid base64.", key)
            return None

    def on_session_input_audio_mute(self, event: Dict[str, Any]) -> None:
        self.muted = True
        self.send_event("session.input_audio.muted", **_client_event_id(event))

    def on_session_input_audio_unmute(self, event: Dict[str, Any]) -> None:
        self.muted = False
        self.send_event("session.input_audio.unmuted", **_client_event_id(event))

    def _caller_started(self, found: SpeechStarted) -> None:
        self.utterance = Utterance(found.audio_start_ms)
        # full duplex: the caller's speech stops the output within a delta; no event says so
        self.mixer.stop()

    def _transcribe(self, until_ms: int, final: bool) -> None:
        """Input transcript words for the speech up to ``until_ms``: one per WORD_MS, and at the
        end one for what is left if that is half a word or the utterance has none yet."""
        u = self.utterance
        word = self.server.reply
        while until_ms - u.transcribed_ms >= WORD_MS:
            self._word(u, word, u.transcribed_ms + WORD_MS)
        left = until_ms - u.transcribed_ms
        if final and (left >= WORD_MS // 2 or (not u.words and left > 0)):
            self._word(u, word, until_ms)

    def _word(self, u: Utterance, word: str, end_ms: int) -> None:
        self.send_event("session.input_transcript.delta", delta=(" " if u.words else "") + word,
                        start_ms=u.transcribed_ms, end_ms=end_ms)
        u.words.append(word)
        u.transcribed_ms = end_ms

    def _caller_stopped(self, found: SpeechStopped) -> None:
        u = self.utterance
        if u is None:
            return
        spoken_until = found.audio_end_ms - SILENCE_MS
        self._transcribe(spoken_until, final=True)
        self.utterance = None
        if TRIGGER_WORD in u.words:
            self._delegate(spoken_until)
            return
        turn = found.turn[: max(0, len(found.turn) - SILENCE_MS * 24)]   # without its closing quiet
        if self.server.reply == "echo" and len(turn):
            self.speak(turn, f"echo of {len(turn) * 1000 // 24000} ms")
        else:
            self.speak(audio.tone(24000), "tone")

    # output ----------------------------------------------------------------------------
    def speak(self, samples: np.ndarray, text: str, on_done: Optional[Callable[[], None]] = None) -> None:
        """Queue 24 kHz samples, with their transcript, on the mixer."""
        self.mixer.say(Speech(audio.resample(samples, 24000, self.fmt.rate), text, on_done),
                       time.monotonic(), self.server.speed)
        self.output_ready()

    def speak_text(self, text: str) -> None:
        """What the model says aloud for a text (a result, a commentary): a tone as long as
        it would take to say, with the text as its transcript."""
        seconds = min(10.0, max(0.3, len(text) * MS_PER_CHAR / 1000))
        self.speak(audio.tone(24000, seconds, freq=520.0), text)

    def pump(self, now: float) -> Optional[float]:
        """Send the output that is due at ``now``; seconds until more is due, None when the
        mixer is empty."""
        while self.mixer.busy and not self.stopped:
            wait = self.mixer.due_in(now, self.server.speed)
            if wait > 0:
                return wait
            delta = self.mixer.take(self.timeline_ms)
            self.send_event("session.output_audio.delta", with_id=False,
                            delta=base64.b64encode(audio.encode(self.fmt, delta.samples)).decode())
            for word in delta.words:
                self.send_event("session.output_transcript.delta", delta=word.text,
                                start_ms=word.start_ms, end_ms=word.end_ms)
            if delta.finished is not None and delta.finished.on_done is not None:
                delta.finished.on_done()
        return None

    def on_session_output_audio_fixture_play(self, event: Dict[str, Any]) -> None:
        if self.fixture is not None:
            self.refuse(event, "audio_fixture_active", "Only one audio fixture can be active.")
            return
        wire = self._audio(event, "audio")
        if wire is None:
            return
        if len(wire) % 2 or not wire:
            self.refuse(event, "invalid_value", "Invalid 'audio': expected mono PCM16 samples.", "audio")
            return
        if len(wire) > FIXTURE_MAX_S * 24000 * 2:
            self.refuse(event, "invalid_value", f"Invalid 'audio': at most {FIXTURE_MAX_S} seconds.", "audio")
            return
        # "validated before model speech is interrupted and input is muted"
        self.mixer.stop()
        self.vad.reset_turn()
        self.utterance = None
        self.fixture = event
        self.send_event("session.output_audio.fixture.playing", **_client_event_id(event))
        self.speak(np.frombuffer(wire, "<i2"), "", on_done=self._fixture_played)

    def _fixture_played(self) -> None:
        event, self.fixture = self.fixture, None
        self.send_event("session.output_audio.fixture.played", **_client_event_id(event))

    # context appends -------------------------------------------------------------------
    def _append(self, event: Dict[str, Any]) -> bool:
        """The checks every append shares; False when it was refused."""
        if self.fixture is not None:
            self.refuse(event, "audio_fixture_active", f"{event['type']} is rejected while an audio "
                        "fixture is active.")
            return False
        if live_session.estimated_tokens(event["content"]) > CONTEXT_MAX_TOKENS:
            # 500 tokens (observed); counted here as 4 characters a token
            self.refuse(event, "string_above_max_length", f"content is limited to {CONTEXT_MAX_TOKENS} "
                        "tokens.", "content")
            return False
        delegation_id = event["delegation_id"]
        if delegation_id is not None:
            if self.backend is not None:
                self.refuse(event, "invalid_value", "delegation_id must be null with Responses "
                            "delegation.", "delegation_id")
                return False
            if self.delegations.get(delegation_id) != "client":
                self.refuse(event, "invalid_value", f"No client delegation with id '{delegation_id}'.",
                            "delegation_id")
                return False
        at = self.timeline_ms
        self.send_event(event["type"] + "ed", start_ms=at, end_ms=at, **_client_event_id(event))
        return True

    def on_session_instructions_append(self, event: Dict[str, Any]) -> None:
        self._append(event)

    def on_session_thinking_append(self, event: Dict[str, Any]) -> None:
        if self._append(event):
            self._cancel_acks()

    def on_session_commentary_append(self, event: Dict[str, Any]) -> None:
        if self._append(event):
            self._cancel_acks()
            self.speak_text(event["content"])

    # not implemented here ----------------------------------------------------------------
    def _not_here(self, event: Dict[str, Any]) -> None:
        self.refuse(event, "not_supported_by_local_server", f"{event['type']} is not implemented by this "
                    "local server.", "type")

    on_decision_create = on_decision_item_create = on_decision_item_delete = _not_here
