"""One call's Realtime session: the protocol state machine wired to a websocket and the call's media.

Threads and hand-offs, one way per direction:

    media thread --capture()--> deque --uplink pump (one thread, all calls)--> websocket
    websocket --receiver thread--> protocol --> PlayoutBuffer --next_frame()--> media thread
                                            \\-> FreeSWITCH events

The media thread only appends to a deque and pops from another: no lock, no wake-up.
The protocol lock guards state transitions only: it is never held across a socket
call, a switch call or a join.
"""
from __future__ import annotations

import base64
import collections
import ctypes
import gc
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

import orjson
import websocket

from . import events, registry, uplink
from .audio import PCM24, AudioFormat, DownlinkDecoder, UplinkEncoder
from .connection import ConnectError, Endpoint, close_code, open_websocket
from .frames import OPCODE_PING, FrameWriter
from .host import CallMedia
from .log import ERR, INFO, WARNING, log
from .playout import PlayoutBuffer
from .protocol import (Action, End, EndAudio, Flush, Forward, Log, OpenUplink, Play,
                       RealtimeProtocol, Send, SetOutput)

TICK = 0.02          # housekeeping period: playback events, overrun events
NO_WRITES_WARNING = 2.0
JOIN_TIMEOUT = 3.0
_APPEND_HEAD = b'{"type":"input_audio_buffer.append","audio":"'


def _name_native_thread() -> None:
    """Give the OS thread the Python thread's name, so top -H and /proc show which calls cost what."""
    try:
        ctypes.CDLL(None).prctl(15, threading.current_thread().name[:15].encode(), 0, 0, 0)  # PR_SET_NAME
    except Exception:  # not Linux, or no prctl: names are a convenience
        pass


TRIM_AGAIN_AFTER = 2.0   # seconds: the switch tears the calls down after their sessions end


def _trim_when_idle() -> None:
    """Trim now that the last session has ended, and once more a little later: a session ends
    before its channel does (a hangup, or uuid_kill after session.delete), and what the switch
    frees in the channel's teardown would otherwise stay in its arenas (measured at 100 calls:
    about 20 MB that one trim after the teardown hands back)."""
    _trim_heap()

    def again() -> None:
        if not registry.all_sessions():
            _trim_heap()

    timer = threading.Timer(TRIM_AGAIN_AFTER, again)
    # not "s2s-": status counts those as the sessions' threads, which must be 0 once they end
    timer.name, timer.daemon = "openai_s2s-trim", True
    timer.start()


def _trim_heap() -> None:
    """Hand freed memory back to the OS once no session is left: every session thread gets a
    glibc malloc arena of its own, and without a trim the switch keeps their high-water mark
    (measured: +25 MB after 25 calls had ended). Only when idle, because a trim holds each
    arena's lock while it walks it, and media threads allocate from those arenas too."""
    gc.collect()   # sessions end as cycles (a thread's target is the session): free them first
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except Exception:  # not glibc
        pass


def _shutdown(ws: websocket.WebSocket) -> None:
    """Close the socket, but not in the middle of the pump's write: the pump writes by file
    descriptor (frames.FrameWriter), and a descriptor closed under it could be reused by
    another call's new socket. The pump never holds the lock for long; a receiver stuck in a
    pong to a server that stopped reading may, so the wait is bounded."""
    lock = getattr(ws, "lock", None)
    held = lock.acquire(timeout=1.0) if lock is not None else False
    try:
        ws.shutdown()
    finally:
        if held:
            lock.release()


def _percentiles(samples: "Deque[float]") -> Dict[str, Optional[float]]:
    values = sorted(samples)
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "n": len(values)}


class Session:
    def __init__(self, switch: Any, call: CallMedia, endpoint: Endpoint,
                 options: Dict[str, Any], generation: str):
        self.switch = switch
        self.call = call
        self.uuid = call.uuid
        self.endpoint = endpoint
        self.options = options
        self.proto = RealtimeProtocol(generation, options["hold_response_create"],
                                      options["idle_timeout_action"])
        self.playout = PlayoutBuffer(call.rate, call.frame_samples, options["playout_max_ms"])
        self._decoder = DownlinkDecoder(PCM24, call.rate, options["resampler"])
        # (capture time, pcm) for caller audio; (None, bytes) for a client event;
        # (None, AudioFormat) when the uplink opens. Appended by the media and API threads,
        # taken by the uplink pump.
        self._outq: "Deque[Tuple[Optional[float], Any]]" = collections.deque()
        self._uplink_max = max(1, options["uplink_max_ms"] * call.rate // (1000 * call.frame_samples))
        self._lock = threading.Lock()
        self._play_lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = False
        self._closed = threading.Event()
        self._ws: Optional[websocket.WebSocket] = None
        self._writer: Optional[FrameWriter] = None   # the pump's, under ws.lock
        # a media path that chooses its own frame times is told when audio starts (host.py)
        self._audio_ready = getattr(call, "audio_ready", None)
        self._receiver = threading.Thread(target=self._run_receiver, daemon=True,
                                          name=f"s2s-rx-{self.uuid[:8]}")
        # uplink state: the pump thread's alone
        self._encoder: Optional[UplinkEncoder] = None
        self._chunk = bytearray()
        self._chunk_bytes = 0
        self._chunk_started = 0.0
        self._pending: Optional[Tuple[bytes, Optional[float], int]] = None  # waits for room
        # Room known to be left in the socket. It only understates (the peer's acks free more),
        # so the kernel is asked again only when a frame does not fit: asking costs two
        # syscalls, and fcntl.ioctl gives the GIL up around its own.
        self._room = 0
        self._next_tick = 0.0
        self._next_ping = float("inf")
        self.state = "connecting"
        self.created = time.time()
        self.connected_at: Optional[float] = None
        self.close_reason: Optional[str] = None
        # read by the media thread: plain attributes, set by others
        self.uplink_open = False
        self.paused = False
        self.mute_user = False
        # counters (each written by one thread)
        self.frames_in = 0
        self.uplink_dropped = 0
        self.appends = 0
        self.bytes_up = 0
        self.events_out = 0
        self.events_in = 0
        self.deltas = 0
        self.bytes_down = 0
        self.playout_dropped = 0
        self.uplink_latency: Deque[float] = collections.deque(maxlen=512)
        self._last_rx = time.monotonic()
        self._announced = False
        self._frames_seen = 0
        self._overruns_reported = (0, 0)
        self._writes_seen: Optional[int] = None
        self._writes_at = 0.0
        self._warned_no_writes = False

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Attach to the call's media and start connecting. Raises RuntimeError if media fails."""
        self.call.attach(self._on_capture, self.playout.next_frame, self._on_media_closed,
                         mix=self.options["playout_mode"] == "mix")
        self._receiver.start()

    def close(self, reason: str, code: Optional[int] = None) -> None:
        """End everything, once, from any thread but a media thread; joins within a bound."""
        with self._lock:
            closing, self._closing = self._closing, True
        if closing:
            # Someone else is closing: wait for them, unless they may be waiting for us.
            if threading.current_thread() is not self._receiver:
                self._closed.wait(2 * JOIN_TIMEOUT)
            return
        self.close_reason = reason
        was_connected = self.state == "connected"
        self.state = "closing"
        self._stop.set()
        uplink.PUMP.remove(self)
        self.uplink_open = False
        try:
            self.call.detach()
        except Exception as exc:
            log(ERR, f"[{self.uuid}] detaching media failed: {exc!r}")
        ws = self._ws
        # A close frame to a server that stopped reading would block this thread (an API
        # thread, for session.delete) for the send timeout: without room, cut the socket.
        if ws is not None and uplink.send_room(ws.sock) > 64:
            try:
                ws.send_close(websocket.STATUS_NORMAL)
            except Exception:
                pass
        thread = self._receiver
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(JOIN_TIMEOUT / 2)
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
            events.fire(self.switch, events.DISCONNECT, self.uuid,
                        events.body(reason=reason, code=code))
        registry.remove(self.uuid, self)
        self._closed.set()
        log(INFO, f"[{self.uuid}] session ended: {reason}")
        if not registry.all_sessions():
            _trim_when_idle()

    def _close_soon(self, reason: str) -> None:
        """Close from a thread that must not block: the media thread, or mid-dispatch."""
        threading.Thread(target=self.close, args=(reason,), daemon=True,
                         name=f"s2s-close-{self.uuid[:8]}").start()

    # -- media thread ------------------------------------------------------------
    def _on_capture(self, pcm: bytes) -> None:
        if not self.uplink_open or self.paused or self.mute_user:
            return
        if len(self._outq) >= self._uplink_max:
            self.uplink_dropped += 1
            return
        self.frames_in += 1
        self._outq.append((time.monotonic(), pcm))

    def _on_media_closed(self) -> None:
        if not self._closing:
            self._close_soon("hangup")

    # -- caller (API threads) ---------------------------------------------------
    def client_event(self, event: Dict[str, Any]) -> None:
        """Queue a client event; raises protocol.ClientEventError if it must not be sent."""
        if self._closing:
            raise RuntimeError("session is ending")
        with self._lock:
            actions = self.proto.client_event(event)
        self._run(actions)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.playout.paused = paused

    def set_muted(self, who: str, muted: bool) -> None:
        if who in ("user", "all"):
            self.mute_user = muted
        if who in ("model", "all"):
            self.playout.muted = muted

    # -- actions -------------------------------------------------------------------
    def _run(self, actions: List[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                self._outq.append((None, orjson.dumps(action.event)))
                uplink.PUMP.wake()
            elif kind is Forward:
                events.fire(self.switch, events.SERVER_EVENT, self.uuid, action.body)
            elif kind is Play:
                self._play(action)
            elif kind is EndAudio:
                self.playout.end_item()
            elif kind is Flush:
                self._barge_in()
            elif kind is OpenUplink:
                self._outq.append((None, action.format))
                self.uplink_open = True
                uplink.PUMP.wake()
            elif kind is SetOutput:
                self._decoder = DownlinkDecoder(action.format, self.call.rate, self.options["resampler"])
            elif kind is Log:
                log(action.level, f"[{self.uuid}] {action.message}")
            elif kind is End:
                self._close_soon(action.reason)

    def _play(self, action: Play) -> None:
        self.deltas += 1
        self.bytes_down += len(action.payload)
        pcm = self._decoder.decode(action.payload)
        was_empty = self.playout.queued_frames == 0
        if not self.playout.push(action.item, pcm, time.monotonic()):
            self.playout_dropped += len(pcm)
        elif was_empty and self.playout.queued_frames and self._audio_ready is not None:
            self._audio_ready()

    def _barge_in(self) -> None:
        flushed = self.playout.flush()
        with self._lock:
            actions = self.proto.barge_in(flushed.had_audio, flushed.item, flushed.heard_ms)
        if flushed.had_audio:
            with self._play_lock:
                if self._announced:
                    self._announced = False
                    self._playback_event("output_audio.playback_stopped", "interrupted")
        self._run(actions)

    def _playback_event(self, kind: str, reason: Optional[str] = None) -> None:
        fields: Dict[str, Any] = {"type": kind}
        if reason:
            fields["completion_reason"] = reason
        events.fire(self.switch, events.SERVER_EVENT, self.uuid, orjson.dumps(fields))

    # -- receiver thread ---------------------------------------------------------
    def _run_receiver(self) -> None:
        _name_native_thread()
        reason, code = "connection lost", None
        try:
            try:
                ws = open_websocket(self.endpoint, self.options)
            except ConnectError as exc:
                log(WARNING, f"[{self.uuid}] connect to {self.endpoint.display_url} failed: {exc}")
                events.fire(self.switch, events.CONNECT_FAILED, self.uuid, events.body(reason=str(exc)))
                self.close(f"connect_failed: {exc}")
                return
            if self._stop.is_set():
                ws.shutdown()
                return
            self._writer = FrameWriter(ws.sock, timeout=float(self.options["send_timeout"]))
            watch = getattr(ws, "s2s_watch", None)
            if watch is not None:
                self.playout.waiting_on_server = watch.waiting_on_server
            self._ws = ws
            self.state, self.connected_at = "connected", time.time()
            self._last_rx = time.monotonic()
            log(INFO, f"[{self.uuid}] connected to {self.endpoint.display_url} ({self.proto.generation})")
            events.fire(self.switch, events.CONNECT, self.uuid,
                        events.body(url=self.endpoint.display_url, protocol=self.proto.generation))
            ping_interval = float(self.options["ping_interval"])
            self._next_ping = time.monotonic() + ping_interval if ping_interval else float("inf")
            uplink.PUMP.add(self)
            if self._stop.is_set():    # closed while we attached: close() had nothing to remove
                uplink.PUMP.remove(self)
            reason, code = self._receive(ws)
        except Exception as exc:  # never let a thread die silently
            reason = f"internal error: {exc!r}"
            log(ERR, f"[{self.uuid}] receiver failed: {exc!r}")
        self.close(reason, code)

    def _receive(self, ws: websocket.WebSocket):
        while not self._stop.is_set():
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (websocket.WebSocketTimeoutException, TimeoutError):
                continue
            except (websocket.WebSocketConnectionClosedException, OSError) as exc:
                return self.proto.end_reason or f"connection lost: {exc or 'closed'}", None
            self._last_rx = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.events_in += 1
                with self._lock:
                    actions = self.proto.server_event(data)
                self._run(actions)
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                log(WARNING, f"[{self.uuid}] server sent a binary frame ({len(data)} bytes); ignored")
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return self.proto.end_reason or "server closed", close_code(data)
        return "stopped", None

    # -- uplink pump thread -----------------------------------------------------------
    def pump(self, now: float) -> None:
        """Send what is queued, as far as the socket has room, then housekeeping. Never blocks."""
        ws, writer = self._ws, self._writer
        if ws is None or writer is None or self._stop.is_set():
            return
        lock = getattr(ws, "lock", None)
        # websocket-client's own senders (pong, close) take this lock: frames never interleave.
        if lock is None or lock.acquire(False):
            try:
                self._send_queued(ws, writer)
                if now >= self._next_ping and self._fits(ws, 6):
                    self._ping(writer, now)
            finally:
                if lock is not None:
                    lock.release()
        # else the receiver is answering a ping: its turn, ours next tick
        self._upkeep(now)

    def _send_queued(self, ws: websocket.WebSocket, writer: FrameWriter) -> None:
        if self._pending is not None:
            if not self._fits(ws, len(self._pending[0])):
                return
            item, self._pending = self._pending, None
            self._room -= self._send_now(writer, *item)
        outq = self._outq
        for _ in range(len(outq)):    # what is there now: the media thread keeps appending
            stamp, payload = outq.popleft()
            if stamp is not None:
                if self._encoder is None or not self.uplink_open:
                    continue
                if not self._chunk:
                    self._chunk_started = stamp
                self._chunk += self._encoder.encode(payload)
                if len(self._chunk) < self._chunk_bytes:
                    continue
                item = self._take_chunk()
            elif isinstance(payload, AudioFormat):
                item = self._take_chunk()
                self._encoder = UplinkEncoder(self.call.rate, payload, self.options["resampler"])
                per_sample = 2 if payload.name == "pcm" else 1
                self._chunk_bytes = self.options["chunk_ms"] * payload.rate // 1000 * per_sample
                if item is None:
                    continue
            else:
                item = (payload, None, 0)
            if not self._fits(ws, len(item[0])):
                self._pending = item
                break
            self._room -= self._send_now(writer, *item)

    def _fits(self, ws: websocket.WebSocket, size: int) -> bool:
        if size > self._room:
            self._room = uplink.send_room(ws.sock)
        return size <= self._room

    def pump_failed(self, exc: BaseException) -> None:
        uplink.PUMP.remove(self)
        if isinstance(exc, (websocket.WebSocketException, OSError)):
            self._close_soon(f"send failed: {exc!r}")
        else:
            log(ERR, f"[{self.uuid}] uplink failed: {exc!r}")
            self._close_soon(f"internal error: {exc!r}")

    def _take_chunk(self) -> Optional[Tuple[bytes, Optional[float], int]]:
        if not self._chunk:
            return None
        item = (_APPEND_HEAD + base64.b64encode(self._chunk) + b'"}', self._chunk_started, len(self._chunk))
        self._chunk.clear()
        return item

    def _send_now(self, writer: FrameWriter, data: bytes, started: Optional[float], audio: int) -> int:
        size = writer.send(data)
        if started is None:
            self.events_out += 1
        else:
            self.uplink_latency.append(time.monotonic() - started)
            self.appends += 1
            self.bytes_up += audio
        return size

    def _ping(self, writer: FrameWriter, now: float) -> None:
        self._room -= writer.send(b"", OPCODE_PING)
        self._next_ping = now + float(self.options["ping_interval"])

    def _upkeep(self, now: float) -> None:
        if now >= self._next_tick:
            self._next_tick = now + TICK
            self._housekeeping(now)
        # Silence from the server for two ping intervals (and a send timeout) ends the call;
        # a ping that found no room in the socket counts too.
        interval = float(self.options["ping_interval"])
        if interval and now - self._last_rx > 2 * interval + self.options["send_timeout"]:
            uplink.PUMP.remove(self)
            self._close_soon("ping timeout")

    def _housekeeping(self, now: float) -> None:
        self._check_writes(now)
        with self._play_lock:
            frames_out = self.playout.frames_out
            if not self._announced and frames_out > self._frames_seen:
                self._announced = True
                self._playback_event("output_audio.playback_started")
            elif self._announced and not self.playout.active:
                self._announced = False
                self._playback_event("output_audio.playback_stopped", "completed")
            self._frames_seen = frames_out
        reported = (self.uplink_dropped, self.playout.overruns)
        if reported != self._overruns_reported:
            up = reported[0] - self._overruns_reported[0]
            down = reported[1] - self._overruns_reported[1]
            self._overruns_reported = reported
            frame_ms = self.call.frame_samples * 1000 // self.call.rate
            if up:
                events.fire(self.switch, events.BUFFER_OVERRUN, self.uuid,
                            events.body(direction="uplink", dropped_ms=up * frame_ms))
            if down:
                events.fire(self.switch, events.BUFFER_OVERRUN, self.uuid,
                            events.body(direction="playout", dropped_deltas=down))

    def _check_writes(self, now: float) -> None:
        """Say once if the channel stops writing: the caller's audio is taken from the bug
        on each frame the channel writes (one media callback a frame, see fsbridge), so a
        channel that writes nothing is neither heard by the model nor hears it."""
        writes = getattr(self.call, "write_callbacks", None)
        if writes is None or not self.uplink_open:
            return
        if writes != self._writes_seen:
            self._writes_seen, self._writes_at = writes, now
        elif not self._warned_no_writes and now - self._writes_at > NO_WRITES_WARNING:
            self._warned_no_writes = True
            log(WARNING, f"[{self.uuid}] the channel has written no audio for {NO_WRITES_WARNING:g} s: "
                         "the model neither hears the caller nor is heard (a parked call needs "
                         "send_silence_when_idle=-1)")

    # -- status --------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        proto, playout = self.proto, self.playout
        return {
            "uuid": self.uuid, "state": self.state, "protocol": proto.generation,
            "url": self.endpoint.display_url,
            "age_s": round(time.time() - self.created, 1),
            "channel_rate": self.call.rate,
            "input_format": proto.input_format.name, "output_format": proto.output_format.name,
            "uplink_open": self.uplink_open, "paused": self.paused,
            "muted": {"user": self.mute_user, "model": playout.muted},
            "response_in_progress": proto.response_id is not None,
            "counters": {
                "frames_in": self.frames_in, "frames_dropped": self.uplink_dropped,
                "appends": self.appends, "bytes_up": self.bytes_up,
                "events_out": self.events_out, "events_in": self.events_in,
                "deltas": self.deltas, "bytes_down": self.bytes_down,
                "frames_out": playout.frames_out, "frames_queued": playout.queued_frames,
                "underruns": playout.underruns,
                "underruns_receiver_behind": playout.underruns_receiver_behind,
                "overruns": playout.overruns,
                "barge_ins": proto.barge_ins, "translations": proto.translations,
                "frames_after_barge_in": playout.frames_after_flush,
                # the uplink's backlog, and whether it waits for the server to read
                "uplink_queued": len(self._outq), "uplink_waiting_for_room": self._pending is not None,
            },
            "latency_ms": {"uplink": _percentiles(self.uplink_latency),
                           "downlink": _percentiles(playout.latencies),
                           "downlink_idle": _percentiles(playout.idle_latencies)},
            "media": self.call.stats() if hasattr(self.call, "stats") else {},
        }
