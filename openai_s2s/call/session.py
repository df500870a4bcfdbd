"""One call's Realtime session: the protocol state machine wired to a websocket and the call's media.

Threads and hand-offs, one way per direction:

    media thread --capture--> UplinkSender's deque --uplink pump (one thread, all calls)--> websocket
    (unicast: the s2s-media thread takes the frames and is the pump for its calls)
    websocket --Receiver thread--> protocol --> PlayoutBuffer --next_frame()--> media thread
                                            \\-> FreeSWITCH events

The media thread only appends to a deque and pops from another: no lock, no wake-up.
The protocol lock guards state transitions only: it is never held across a socket
call, a switch call or a join. This module holds the lifecycle and carries out the protocol's
actions; the receiver (``receiver.py``), the uplink (``uplink.py``), the periodic checks
(``housekeeping.py``) and the status (``status.py``) are each in their own.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, List, Optional

import orjson
import websocket

from .. import process
from ..log import ERR, INFO, WARNING, Folded, add_secret, forget_secret, log
from ..media.codec import DownlinkDecoder
from ..media.formats import PCM24
from ..media.playout import PlayoutBuffer
from ..realtime.endpoint import Endpoint
from ..realtime.protocol import (LIVE, Action, ClientEventError, End, EndAudio, ExpiresAt, Flush, Forward, Log, OpenUplink,
                                 Play, PlayDigits, ResponseIdle, Send, SetOutput, ToolCall, Transcript)
from ..realtime.generations import make_protocol
from ..realtime.transport import send_room
from . import callcontrol, events, registry, tally
from .dtmf import DEFAULT_TEMPLATE, DtmfBatcher, render
from .host import CallMedia
from .housekeeping import Housekeeping
from .pump import PUMP, Pump
from .receiver import Receiver
from .replay import conversation_items
from .status import session_status
from .toolcalls import ToolRunner
from .transcript import Transcript as TranscriptStore
from .uplink import UplinkSender

JOIN_TIMEOUT = 3.0
LIVE_QUIET_MS = 400  # GPT-Live: model audio this late is the end of what the model said
CLOSE_WAIT = 0.5     # seconds the server has to answer our close before the socket is cut


def _shutdown(ws: websocket.WebSocket) -> None:
    """Close the socket, but not in the middle of the pump's write: the pump writes by file
    descriptor (frames.FrameWriter), and a descriptor closed under it could be reused by
    another call's new socket. A shutdown first, which keeps the descriptor, ends at once
    whatever waits on the socket (the pump finishing a frame to a server that stopped reading,
    the receiver's poll); then the lock comes free and the socket is closed under it."""
    sock = getattr(ws, "sock", None)
    if sock is not None:
        _cut(sock)
    lock = getattr(ws, "lock", None)
    held = lock.acquire(timeout=1.0) if lock is not None else False
    try:
        ws.shutdown()
    finally:
        if held:
            lock.release()


def _cut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Session:
    def __init__(self, switch: Any, call: CallMedia, endpoint: Endpoint,
                 options: Dict[str, Any], generation: str, secret: Optional[str] = None):
        self.switch = switch
        self.call = call
        self.uuid = call.uuid
        self.endpoint = endpoint
        self.options = options
        self._secrets: List[str] = []   # redacted from every log line while the session lasts
        self.keep_secret(secret)
        self.proto = make_protocol(generation, options)
        self.playout = PlayoutBuffer(call.rate, call.frame_samples, options["playout_max_ms"])
        if generation == LIVE:
            # GPT-Live mixes in real time and never says a turn's audio has ended: a pause in
            # it longer than this is silence, not an underrun
            self.playout.quiet_after_frames = max(1, LIVE_QUIET_MS * call.rate // (1000 * call.frame_samples))
        self._decoder = DownlinkDecoder(PCM24, call.rate, options["resampler"])
        self.lock = threading.Lock()      # the protocol's state
        self.events = events.Gate(switch, call.uuid)
        self.fire, self.tell_connect = self.events.fire, self.events.tell_connect
        self._socket: Optional[Any] = None   # while connecting: shut down to abort a stalled connect
        self.warn = Folded(f"[{call.uuid}] ")
        self.stopping = False
        self._closing = False
        self._closed = threading.Event()
        self.ws: Optional[websocket.WebSocket] = None
        # a media path that chooses its own frame times is told when audio starts (host.py)
        self._audio_ready = getattr(call, "audio_ready", None)
        # and one whose own thread takes the caller's frames sends them too (host.py)
        self.pump: Pump = getattr(call, "uplink_pump", None) or PUMP
        self.housekeeping = Housekeeping(self)
        self.uplink = UplinkSender(call.rate, call.frame_samples, options,
                                   self.housekeeping.tick, self._uplink_failed)
        # a media path whose caller frames wait in the switch for the pump to take them (host.py)
        self.uplink.source = getattr(call, "pull_capture", None)
        self.receiver = Receiver(self)
        self.tools = ToolRunner(self)     # the function calls the module answers itself
        self.transcript = TranscriptStore()
        callcontrol.install(self)
        # the caller's digits, for the model (option dtmf); None when the call did not opt in
        self.dtmf = DtmfBatcher(options.get("dtmf_pause_ms", 1500) / 1000) if options.get("dtmf") is True else None
        self.state = "connecting"
        self.created = time.time()
        # read by the media thread: plain attributes, set by others
        self.paused = False
        self.mute_user = False
        self.holding_caller = False   # paused or muted: the caller's audio stays here
        self.deltas = 0
        self.bytes_down = 0
        # the follow-on sessions of a call longer than one (reconnect)
        self.last_update: Optional[Dict[str, Any]] = None   # the last session.update, as given
        self.reconnects = 0
        self._reconnecting = False

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Attach to the call's media and start connecting. Raises RuntimeError if media fails."""
        self.call.attach(self._on_capture, self.playout.next_frame, self._on_media_closed,
                         mix=self.options["playout_mode"] == "mix", active=lambda: self.playout.active)
        self.receiver.start()

    def keep_secret(self, secret: Optional[str]) -> None:
        """Redact ``secret`` from every log line until the session has ended."""
        if secret:
            add_secret(secret)
            self._secrets.append(secret)

    def forget_secrets(self) -> None:
        """The session's secrets are no longer redacted for it (at its end, or a failed start)."""
        kept, self._secrets = self._secrets, []
        for secret in kept:
            forget_secret(secret)

    def connecting_on(self, sock: Any) -> None:
        """The receiver's socket, before it connects: close() shuts it down to abort a connect
        or handshake that stalls (a session.delete must not wait for the connect timeout)."""
        self._socket = sock
        if self.stopping:
            _cut(sock)

    def connected(self, ws: websocket.WebSocket) -> None:
        """The receiver opened the websocket: the uplink may write to it."""
        watch = getattr(ws, "s2s_watch", None)
        if watch is not None:
            self.playout.waiting_on_server = watch.waiting_on_server
        self.ws = ws
        self.uplink.connected(ws)
        self.state = "connected"
        self.pump.add(self.uplink)
        if self.stopping:    # closed while we attached: close() had nothing to remove
            self.pump.remove(self.uplink)

    def close(self, reason: str, code: Optional[int] = None) -> None:
        """End everything, once, from any thread but a media thread; joins within a bound."""
        with self.lock:
            closing, self._closing = self._closing, True
        if closing:
            # Someone else is closing: wait for them, unless they may be waiting for us.
            if threading.current_thread() is not self.receiver.thread:
                self._closed.wait(2 * JOIN_TIMEOUT)
            return
        if self.proto.generation == LIVE and self.state == "connected" and self.proto.session_updated \
                and threading.current_thread() is not self.receiver.thread:
            self._say_goodbye()
        self.state = "closing"
        self.stopping = True
        self.stop_uplink()
        # connect or connect_failed, exactly one, before session.delete answers
        self.tell_connect(events.CONNECT_FAILED, events.body(reason=reason))
        was_connected = self.events.told == events.CONNECT
        sock = self._socket
        if sock is not None and self.ws is None:
            _cut(sock)   # a connect or handshake in progress ends now
        try:
            self.call.detach()
        except Exception as exc:
            log(ERR, f"[{self.uuid}] detaching media failed: {exc!r}")
        ws = self.ws
        # A close frame to a server that stopped reading would block this thread (an API
        # thread, for session.delete) for the send timeout: without room, cut the socket.
        if ws is not None and send_room(ws.sock) > 64:
            try:
                ws.send_close(websocket.STATUS_NORMAL)
            except Exception:
                pass
        thread = self.receiver.thread
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(CLOSE_WAIT)
            if thread.is_alive() and ws is not None:
                _shutdown(ws)  # a server that never answers the close is cut off here
                thread.join(JOIN_TIMEOUT / 2)
            if thread.is_alive():
                log(ERR, f"[{self.uuid}] thread {thread.name} did not stop")
        if ws is not None:
            _shutdown(ws)
        self.playout.flush()
        self.state = "closed"
        if was_connected:
            self.fire(events.DISCONNECT, events.body(reason=reason, code=code))
        self.events.close()
        self.warn.flush()
        failed = self.events.failed_body
        tally.retire(self, orjson.loads(failed).get("reason", "") if failed else None)
        registry.remove(self.uuid, self)
        self.forget_secrets()
        self._write_transcript()
        self._closed.set()
        log(INFO, f"[{self.uuid}] session ended: {reason}")
        if not registry.all_sessions():
            process.last_session_ended(lambda: not registry.all_sessions())

    def _say_goodbye(self) -> None:
        """GPT-Live finalizes a session on ``session.close`` and says so in ``session.closed``;
        a socket closed without it does not confirm the end. Asked, and awaited briefly."""
        self.uplink.event(b'{"type":"session.close"}')
        self.pump.wake()
        deadline = time.monotonic() + CLOSE_WAIT
        while self.proto.end_reason is None and self.receiver.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- a follow-on session on the same call ------------------------------------------
    def reconnect_soon(self, reason: str) -> bool:
        """Replace the websocket with a new session, from a thread of its own; False if the
        session is ending or already reconnecting."""
        with self.lock:
            if self._closing or self._reconnecting:
                return False
            self._reconnecting = True
        threading.Thread(target=self._reconnect, args=(reason,), daemon=True,
                         name=f"s2s-reconnect-{self.uuid[:8]}").start()
        return True

    def _reconnect(self, reason: str) -> None:
        log(INFO, f"[{self.uuid}] opening a new session: {reason}")
        old = self.receiver
        old.superseded = True
        self.stop_uplink()
        ws, self.ws = self.ws, None
        if ws is not None:
            if send_room(ws.sock) > 64:
                try:
                    ws.send_close(websocket.STATUS_NORMAL)
                except Exception:
                    pass
            _shutdown(ws)
        if old.thread is not threading.current_thread():
            old.thread.join(JOIN_TIMEOUT)
        with self.lock:
            if self._closing:
                self._reconnecting = False
                return
            previous = self.proto
            self.proto = make_protocol(previous.generation, self.options)
            self.proto.barge_ins, self.proto.translations = previous.barge_ins, previous.translations
            self.uplink.reset()
            self.reconnects += 1
            self.state = "connecting"
            self._socket = None
            self.receiver = Receiver(self, reconnect_reason=reason, events_in=old.events_in)
            self.receiver.start()

    def reconnected(self, reason: str) -> None:
        """The receiver opened the follow-on session: say so, then replay the call so far."""
        self._reconnecting = False
        self.fire(events.RECONNECT, events.body(reason=reason, reconnects=self.reconnects))
        log(INFO, f"[{self.uuid}] new session open ({reason}); reconnects: {self.reconnects}")
        for event in self.replay_events():
            try:
                self.client_event(event, len(orjson.dumps(event)))
            except ClientEventError as exc:
                log(WARNING, f"[{self.uuid}] replaying {event['type']} failed: {exc}")

    def replay_events(self) -> List[Dict[str, Any]]:
        """The last session.update, then what was said so far as conversation items (GPT-Live:
        the items first, which makes them the new session.start's history)."""
        replay: List[Dict[str, Any]] = [self.last_update] if self.last_update is not None else []
        items = conversation_items(self.transcript, self.proto.generation)
        return items + replay if self.proto.generation == LIVE else replay + items

    def _write_transcript(self) -> None:
        """With transcript-dir, the transcript goes to a file, on a thread of its own: a slow
        disk must not hold up session.delete."""
        directory = self.options.get("transcript_dir")
        if not directory or not self.transcript.entries():
            return
        try:
            threading.Thread(target=self.transcript.write, args=(directory, self.uuid, self.created),
                             daemon=True, name=f"s2s-transcript-{self.uuid[:8]}").start()
        except RuntimeError as exc:
            log(ERR, f"[{self.uuid}] transcript not written: {exc}")

    def wait_closed(self, timeout: float) -> bool:
        """Block until the session has ended (True) or ``timeout`` seconds have passed."""
        return self._closed.wait(timeout)

    def close_soon(self, reason: str) -> None:
        """Close from a thread that must not block: the media thread, or mid-dispatch."""
        threading.Thread(target=self.close, args=(reason,), daemon=True,
                         name=f"s2s-close-{self.uuid[:8]}").start()

    def stop_uplink(self) -> None:
        self.pump.remove(self.uplink)
        self.uplink.stop()

    def _uplink_failed(self, exc: BaseException) -> None:
        self.stop_uplink()
        if isinstance(exc, (websocket.WebSocketException, OSError)):
            self.close_soon(f"send failed: {exc!r}")
        else:
            log(ERR, f"[{self.uuid}] uplink failed: {exc!r}")
            self.close_soon(f"internal error: {exc!r}")

    # -- media thread ------------------------------------------------------------
    def _on_capture(self, pcm: bytes, at: Optional[float] = None) -> None:
        if self.uplink.open and not self.holding_caller:
            self.uplink.capture(pcm, at)

    def _on_media_closed(self) -> None:
        if not self._closing:
            self.close_soon("hangup")

    # -- caller (API threads) ---------------------------------------------------
    def client_event(self, event: Dict[str, Any], size: int = 0) -> None:
        """Queue a client event of about ``size`` bytes; raises protocol.ClientEventError,
        changing nothing, if it must not be sent."""
        if self._closing:
            raise ClientEventError("the session is ending")
        if self._reconnecting:
            raise ClientEventError("the call is moving to a new server session; try again shortly")
        refusal = self.uplink.refuses_event(size)
        if refusal:
            raise ClientEventError(refusal)
        with self.lock:
            actions = self.proto.client_event(event)
            if event["type"] in ("session.update", "session.start") and self.last_update is None \
                    or event["type"] == "session.update" and self.proto.generation != LIVE:
                self.last_update = event   # GPT-Live: the one that started the session
        self.run(actions)

    def dtmf_digit(self, digit: str) -> None:
        """The switch's event thread: a digit the caller pressed. Only an append."""
        dtmf = self.dtmf
        if dtmf is not None and not self._closing:
            dtmf.push(digit)

    def send_digits(self, digits: str) -> None:
        """The pump's thread (housekeeping): a batch of the caller's digits, to the model as a
        user message, then a response once none is in progress."""
        self.fire(events.SERVER_EVENT, events.body(type="dtmf.received", digits=digits))
        text = render(self.options.get("dtmf_template") or DEFAULT_TEMPLATE, digits)
        event = {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}
        try:
            self.client_event(event, len(orjson.dumps(event)))
        except (ClientEventError, RuntimeError) as exc:
            log(WARNING, f"[{self.uuid}] dtmf {digits} not sent: {exc}")
            return
        log(INFO, f"[{self.uuid}] dtmf {digits} sent to the model")
        if self.proto.generation != LIVE:   # GPT-Live decides itself when to answer
            self.tools.want_response()

    def _hold_caller(self) -> None:
        # GPT-Live mutes the caller itself (it feeds the model silence and keeps its clock): there
        # the caller's audio goes on while muted or paused
        self.holding_caller = (self.paused or self.mute_user) and self.proto.generation != LIVE

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._hold_caller()
        if self.proto.generation == LIVE:
            # GPT-Live mixes in real time and has no pause: the model hears silence (its own
            # mute) and its audio is not played, so nothing piles up to come late
            self.playout.muted = paused
            self._input_mute(paused)
            return
        self.playout.paused = paused

    def set_muted(self, who: str, muted: bool) -> None:
        if who in ("user", "all"):
            self.mute_user = muted
            self._hold_caller()
            if self.proto.generation == LIVE:
                self._input_mute(muted)
        if who in ("model", "all"):
            self.playout.muted = muted

    def _input_mute(self, muted: bool) -> None:
        with self.lock:
            actions = self.proto.input_mute(muted)
        self.run(actions)

    def status(self) -> Dict[str, Any]:
        return session_status(self)

    # -- the protocol's actions ------------------------------------------------------
    def run(self, actions: List[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                self.uplink.event(orjson.dumps(action.event))
                self.pump.wake()
            elif kind is Forward:
                self.fire(events.SERVER_EVENT, action.body)
            elif kind is Play:
                self._play(action)
            elif kind is EndAudio:
                self.playout.end_item()
            elif kind is Flush:
                self._barge_in(action.cancel)
            elif kind is OpenUplink:
                self.uplink.start_audio(action.format, action.event)
                self.pump.wake()
            elif kind is SetOutput:
                self._decoder = DownlinkDecoder(action.format, self.call.rate, self.options["resampler"])
            elif kind is Log:
                if action.fold:
                    self.warn(action.level, action.fold, action.message)
                else:
                    log(action.level, f"[{self.uuid}] {action.message}")
            elif kind is ToolCall:
                self.tools.call(action.call_id, action.name, action.arguments)
            elif kind is Transcript:
                self.transcript.add(action.role, action.item_id, action.text)
            elif kind is ExpiresAt:
                self.housekeeping.expiry.server_says(action.unix_time - time.time() + time.monotonic())
            elif kind is PlayDigits:
                self._play_digits(action.digits)
            elif kind is ResponseIdle:
                self.tools.response_idle()
            elif kind is End:
                self.close_soon(action.reason)

    def _play_digits(self, digits: str) -> None:
        """GPT-Live asks the transport to play digits to the caller."""
        try:
            self.call.send_dtmf(digits)
        except Exception as exc:
            log(WARNING, f"[{self.uuid}] digits {digits} from the server not played: {exc!r}")
            return
        self.fire(events.SERVER_EVENT, events.body(type="dtmf.played", digits=digits))
        log(INFO, f"[{self.uuid}] played digits {digits} the server sent")

    def _play(self, action: Play) -> None:
        self.deltas += 1
        self.bytes_down += len(action.payload)
        pcm = self._decoder.decode(action.payload)
        was_empty = self.playout.queued_frames == 0
        if self.playout.push(action.item, pcm, time.monotonic()) and was_empty \
                and self._audio_ready is not None and self.playout.queued_frames:
            self._audio_ready()

    def barge_in(self) -> bool:
        """The caller's own barge-in (the ``barge-in`` command): flush, cancel, truncate.
        True if there was model audio or a response to cut off."""
        active = self.playout.active or self.playout.queued_frames > 0 or self.proto.response_id is not None
        self._barge_in(cancel=True)
        return active

    def _barge_in(self, cancel: bool) -> None:
        flushed = self.playout.flush()
        with self.lock:
            actions = self.proto.barge_in(flushed.had_audio, flushed.item, flushed.heard_ms, cancel)
        if flushed.had_audio:
            self.housekeeping.interrupted()
        self.run(actions)
