"""One call's uplink: caller audio and client events, queued by the media and API threads and
written to the websocket by the thread that pumps the call.

    media thread --capture()--> deque --UplinkPump (one thread, all calls)--> websocket
    unicast:  s2s-media takes the frame --> deque --the same thread, in the same pass--> websocket

The media thread only appends to a deque: no lock, no wake-up. A media bug's callback never
sends: with the callbacks sending their own call's audio (measured at 100 bridged calls), the
media threads took 191-193 % of the two cores against 140-164 % and 53,000-63,000 frames were
late against 10-5,300 (docs/performance.md).

A frame goes out only when the socket has room for all of it, so the shared pump never waits on
one call's socket. A client event larger than the room (on a real path the room is about half
of a 70 KB send buffer, and a session.update with long instructions or many tools is larger)
goes out as a fragmented message (RFC 6455 5.4): a fragment of what fits each time there is
room, then the final continuation frame. Nothing else of the call's is sent in between but the
pump's pings and websocket-client's pongs and close, control frames that the RFC allows there.
"""
from __future__ import annotations

import binascii
import collections
import threading
import time
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import websocket

from ..media.codec import UplinkEncoder
from ..media.formats import AudioFormat
from ..media.meters import LatencyHistogram
from ..realtime.frames import MAX_OVERHEAD, OPCODE_CONTINUATION, OPCODE_PING, OPCODE_TEXT, FrameWriter
from ..realtime.transport import send_room

_APPEND_HEAD = b'{"type":"input_audio_buffer.append","audio":"'
MIN_FRAGMENT = 1024   # a fragment carries at least this much (or the rest): fewer, larger frames
MAX_QUEUED_EVENTS = 256          # client events waiting for the server, apart from the audio bound
MAX_QUEUED_EVENT_BYTES = 16 << 20
_NEVER = float("inf")
Pending = Tuple[bytes, Optional[float], int]   # a frame's payload, capture time of its audio, audio bytes


class UplinkSender:
    """The per-call side of the pump: what is queued, and what the socket has room for."""

    def __init__(self, rate: int, frame_samples: int, options: Dict[str, Any],
                 tick: Callable[[float], None], failed: Callable[[BaseException], None]):
        self.rate = rate
        self.options = options
        self._tick = tick          # the session's housekeeping, on the pump's thread
        self._failed = failed
        # (capture time, pcm) for caller audio; (None, bytes) for a client event;
        # (None, AudioFormat) when the uplink opens. Appended by the media and API threads.
        self.queue: "Deque[Tuple[Optional[float], Any]]" = collections.deque()
        self.max_frames = max(1, options["uplink_max_ms"] * rate // (1000 * frame_samples))
        # Caller audio older than this when the pump reaches it is dropped, not sent: a pump
        # that fell behind (a starved process) catches up at once instead of running late.
        self.max_latency = options["uplink_max_latency_ms"] / 1000
        self.append_head = _APPEND_HEAD
        self.open = False          # read by the media thread: caller audio is queued only when open
        self.opened_at = float("inf")   # when it last opened: audio captured before that stays
        # the media path's pull of the caller's frames, on the pump's thread before each send
        # (a media bug's, where the frames wait in the switch); None where they are pushed
        self.source: Optional[Callable[[], None]] = None
        self.stopped = False
        self.ws: Optional[websocket.WebSocket] = None
        self._writer: Optional[FrameWriter] = None   # under ws.lock
        self._encoder: Optional[UplinkEncoder] = None
        self._chunk = bytearray()       # wire format
        self._raw = bytearray()         # channel PCM of the same chunk, not yet encoded
        self._bytes_per_sample: Optional[int] = None   # the encoder's, when it can take a chunk at once
        self._chunk_bytes = 0
        self._chunk_started = 0.0
        self.pending: Optional[Pending] = None    # a frame waiting for room in the socket
        self._events_lock = threading.Lock()   # the two below: API and receiver threads add, the pump takes
        self.events_queued = 0
        self.event_bytes_queued = 0
        self._fragmented = False   # the pending message's first fragment has gone out
        self.fragments = 0
        # Room known to be left in the socket. It only understates (the peer's acks free more),
        # so the kernel is asked again only when a frame does not fit: asking costs two
        # syscalls, and fcntl.ioctl gives the GIL up around its own.
        self._room = 0
        self._next_ping = float("inf")
        # counters, each written by one thread
        self.frames_in = 0
        self.dropped = 0           # the queue full (media thread)
        self.dropped_late = 0      # older than max_latency when the pump got to them (pump)
        self.appends = 0
        self.bytes_up = 0
        self.events_out = 0
        self.latency: Deque[float] = collections.deque(maxlen=512)
        self.latency_histogram = LatencyHistogram()   # every append, for the metrics

    @property
    def dropped_total(self) -> int:
        return self.dropped + self.dropped_late

    # -- producers ---------------------------------------------------------------
    def capture(self, pcm: bytes, at: Optional[float] = None) -> None:
        """One frame of caller audio, captured at ``at`` (now if None): from the media thread,
        or from a pull on the pump's own. A frame captured before the uplink opened (it waited
        in the switch for the pull) is not the session's: it is left out, as it would have been."""
        if at is None:
            at = time.monotonic()
        elif at < self.opened_at:
            return
        if len(self.queue) >= self.max_frames:
            self.dropped += 1
            return
        self.frames_in += 1
        self.queue.append((at, pcm))

    def refuses_event(self, size: int) -> Optional[str]:
        """Why a client event of ``size`` bytes cannot be queued now, or None."""
        if self.events_queued >= MAX_QUEUED_EVENTS or self.event_bytes_queued + size > MAX_QUEUED_EVENT_BYTES:
            return (f"{self.events_queued} client events ({self.event_bytes_queued} bytes) are waiting for "
                    "the server to read; try again later")
        return None

    def event(self, data: bytes) -> None:
        with self._events_lock:
            self.events_queued += 1
            self.event_bytes_queued += len(data)
        self.queue.append((None, data))

    def _event_taken(self, data: bytes) -> None:
        with self._events_lock:
            self.events_queued -= 1
            self.event_bytes_queued -= len(data)

    def start_audio(self, fmt: AudioFormat, event: str = "input_audio_buffer.append") -> None:
        """Caller audio goes up from now on, in ``fmt`` (again when the format changes), as
        client events of type ``event``."""
        self.append_head = b'{"type":"' + event.encode() + b'","audio":"'
        self.queue.append((None, fmt))
        if not self.open:
            self.opened_at = time.monotonic()
        self.open = True

    def stop(self) -> None:
        self.stopped = True
        self.open = False

    def reset(self) -> None:
        """Forget the websocket and everything queued for it, keeping the counters: a new
        session on the same call (a reconnect) starts from here. Only while stopped."""
        self.queue.clear()
        self.ws, self._writer, self._encoder = None, None, None
        self._chunk.clear()
        self._raw.clear()
        self.pending = None
        with self._events_lock:
            self.events_queued = self.event_bytes_queued = 0
        self._fragmented = False
        self._room = 0
        self._next_ping = float("inf")
        self.stopped = False

    def connected(self, ws: websocket.WebSocket) -> None:
        self._writer = FrameWriter(ws.sock, timeout=float(self.options["send_timeout"]))
        self.ws = ws
        interval = float(self.options["ping_interval"])
        self._next_ping = time.monotonic() + interval if interval else float("inf")

    # -- the pump's thread --------------------------------------------------------
    def pump(self, now: float, wait: bool = True) -> None:
        """Send what is queued, as far as the socket has room, then housekeeping. Never blocks
        on a full socket; ``wait`` False (the unicast media loop) never waits at all on a
        plain socket, not even to finish a frame the kernel took only part of (TLS: the ssl
        module's writes, as with the pump)."""
        if self.source is not None:
            self.source()
        ws, writer = self.ws, self._writer
        if ws is None or writer is None or self.stopped:
            return
        if not self.queue and self.pending is None and now < self._next_ping and writer.unfinished is None:
            self._tick(now)      # nothing to send (a call between two frames): no lock
            return
        lock = getattr(ws, "lock", None)
        # websocket-client's own senders (pong, close) take this lock: frames never interleave.
        if lock is None or lock.acquire(False):
            nowait = not wait and writer.raw
            writer.may_wait = not nowait
            try:
                # what a send that could not wait left half written goes first
                if nowait:
                    writer.flush_some()
                else:
                    writer.finish()
                self._send_queued(ws, writer, now - self.max_latency)
                if now >= self._next_ping and self._fits(ws, 6):
                    self._room -= writer.send(b"", OPCODE_PING)
                    self._next_ping = now + float(self.options["ping_interval"])
            finally:
                writer.may_wait = True
                if lock is not None:
                    lock.release()
        # else the receiver is answering a ping: its turn, ours next tick
        self._tick(now)

    def pump_failed(self, exc: BaseException) -> None:
        self._failed(exc)

    def waiting_since(self) -> float:
        """When the oldest caller audio not yet sent was captured (a queued client event: 0,
        nothing: infinity), so that a thread serving many calls can send the oldest first."""
        if self._raw or self._chunk:
            return self._chunk_started
        queue = self.queue
        if not queue:
            return _NEVER
        stamp = queue[0][0]
        return 0.0 if stamp is None else stamp

    def _send_queued(self, ws: websocket.WebSocket, writer: FrameWriter, stale: float) -> None:
        if self.pending is not None and not self._send_pending(ws, writer):
            return
        queue = self.queue
        chunk, raw = self._chunk, self._raw
        budget = len(queue)    # what is there now: the media thread keeps appending
        while budget > 0 and queue:
            budget -= 1
            stamp, payload = queue.popleft()
            if stamp is not None:
                encoder = self._encoder
                if encoder is None or not self.open:
                    continue
                if stamp < stale:
                    self.dropped_late += 1
                    continue
                if not chunk and not raw:
                    self._chunk_started = stamp
                per_sample = self._bytes_per_sample
                if per_sample is not None and not len(payload) & 1:
                    # Encoded as the chunk's last frame comes: one resample and one G.711
                    # pass a chunk, not one a frame. The same bytes (whole samples, and an
                    # encoder whose output is exactly per_sample bytes a sample), but for the
                    # FIR's sums, which BLAS may order otherwise for more rows (one LSB).
                    if len(chunk) + (len(raw) + len(payload)) // 2 * per_sample < self._chunk_bytes:
                        raw += payload
                        continue
                    if raw:
                        raw += payload
                        chunk += encoder.encode(bytes(raw))
                        raw.clear()
                    else:
                        chunk += encoder.encode(payload)
                else:
                    if raw:
                        chunk += encoder.encode(bytes(raw))
                        raw.clear()
                    chunk += encoder.encode(payload)
                    if len(chunk) < self._chunk_bytes:
                        continue
                item = self._take_chunk()
            elif isinstance(payload, AudioFormat):
                item = self._take_chunk()
                self._encoder = UplinkEncoder(self.rate, payload, self.options["resampler"])
                self._bytes_per_sample = self._encoder.bytes_per_sample
                per_sample = 2 if payload.name == "pcm" else 1
                self._chunk_bytes = self.options["chunk_ms"] * payload.rate // 1000 * per_sample
                if item is None:
                    continue
            else:
                item = self._take_chunk()
                if item is not None:
                    # The caller's audio from before the event goes first, as a short append:
                    # a commit must carry all of it (a held chunk would land in the next turn).
                    queue.appendleft((None, payload))
                    budget += 1
                else:
                    self._event_taken(payload)
                    item = (payload, None, 0)
            if not self._fits(ws, len(item[0])):
                self.pending = item
                if not self._send_pending(ws, writer):
                    break
                continue
            self._room -= self._send_now(writer, *item)

    def _send_pending(self, ws: websocket.WebSocket, writer: FrameWriter) -> bool:
        """The pending frame whole if it fits now, else the next fragment that does; True
        once all of it is out."""
        data, started, audio = self.pending
        if self._fits(ws, len(data)):
            self.pending = None
            if self._fragmented:
                self._fragmented = False
                self._room -= writer.send(data, OPCODE_CONTINUATION)
                self._count(started, audio)
            else:
                self._room -= self._send_now(writer, data, started, audio)
            return True
        size = self._room - MAX_OVERHEAD
        if size < MIN_FRAGMENT:
            return False
        view = memoryview(data)
        self._room -= writer.send(view[:size], OPCODE_CONTINUATION if self._fragmented else OPCODE_TEXT,
                                  fin=False)
        self._fragmented = True
        self.fragments += 1
        self.pending = (view[size:], started, audio)
        return False

    def _fits(self, ws: websocket.WebSocket, size: int) -> bool:
        if size > self._room:
            self._room = send_room(ws.sock)
        return size <= self._room

    def _take_chunk(self) -> Optional[Pending]:
        chunk = self._chunk
        if self._raw:
            chunk += self._encoder.encode(bytes(self._raw))
            self._raw.clear()
        if not chunk:
            return None
        item = (self.append_head + binascii.b2a_base64(chunk, newline=False) + b'"}', self._chunk_started, len(chunk))
        chunk.clear()
        return item

    def _send_now(self, writer: FrameWriter, data: bytes, started: Optional[float], audio: int) -> int:
        size = writer.send(data)
        self._count(started, audio)
        return size

    def _count(self, started: Optional[float], audio: int) -> None:
        if started is None:
            self.events_out += 1
        else:
            latency = time.monotonic() - started
            self.latency.append(latency)
            self.latency_histogram.observe(latency)
            self.appends += 1
            self.bytes_up += audio
