"""One call's receiver thread: it opens the websocket, then reads the server's events into the
protocol and carries out what the protocol says.

    websocket --receiver--> protocol --> PlayoutBuffer / FreeSWITCH events
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Optional, Tuple

import websocket

from .. import native
from ..log import ERR, INFO, WARNING, log
from ..realtime.transport import ConnectError, close_code, open_websocket
from ..threads import FairLock
from . import events


MAX_RECONNECTS = 10   # per call: a server that keeps closing must not be redialled for ever

# Every call's receiver takes this turn to run its Python (parse, protocol, playout, events)
# and gives it up to wait (transport.ReceiveWatch): a burst of server events queues one
# receiver for the GIL beside the media loop and the pump, not dozens. The GIL runs one of
# them at a time anyway. Measured in the switch at 100 parked calls, 21 runs with turns and 12
# without (docs/performance.md, "Receivers taking turns"): the loop's largest frame gap median
# 27.3 ms against 30.3, the worst call's downlink p99 median 9.3 ms against 12.6, the same CPU
# within the spread; bridged, the largest gap 31.0-35.7 ms against 34.3-38.7.
# First come, first served (threads.FairLock): a receiver whose server floods it handles one
# message and then waits behind the others, never holding the turn for as long as it has work.
# The unicast media loop pauses the turn for each of its passes (switch/unicast.py).
TURN = FairLock()


class Receiver:
    def __init__(self, session: Any, reconnect_reason: Optional[str] = None, events_in: int = 0):
        self.session = session
        self.last_rx = time.monotonic()
        self.events_in = events_in
        self.reconnect_reason = reconnect_reason   # set: this receiver opens a follow-on session
        self.superseded = False   # a reconnect took over: end quietly, the session goes on
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"s2s-rx-{session.uuid[:8]}")

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        session = self.session
        native.name_thread(self.thread.name)
        reason, code = "connection lost", None
        try:
            endpoint = session.endpoint
            try:
                ws = open_websocket(endpoint, session.options, on_socket=session.connecting_on)
            except (ConnectError, OSError) as exc:
                if session.stopping:   # deleted while connecting: close() has said so
                    return
                log(WARNING, f"[{session.uuid}] connect to {endpoint.display_url} failed: {exc}")
                if self.reconnect_reason is not None:
                    session.close(f"reconnect failed: {exc}")
                    return
                session.tell_connect(events.CONNECT_FAILED, events.body(reason=str(exc)))
                session.close(f"connect_failed: {exc}")
                return
            if session.stopping:
                ws.shutdown()
                return
            self.last_rx = time.monotonic()
            session.housekeeping.expiry.start(self.last_rx)   # the service's clock starts about now
            session.connected(ws)
            if self.reconnect_reason is not None:
                session.reconnected(self.reconnect_reason)
            elif not session.tell_connect(events.CONNECT, events.body(url=endpoint.display_url,
                                                                      protocol=session.proto.generation)):
                ws.shutdown()   # session.delete came first, and has said connect_failed
                return
            else:
                log(INFO, f"[{session.uuid}] connected to {endpoint.display_url} ({session.proto.generation})")
            reason, code = self._receive(ws)
            if self._follow_on(reason):
                return
        except Exception as exc:  # never let a thread die silently
            reason = f"internal error: {exc!r}"
            log(ERR, f"[{session.uuid}] receiver failed: {exc!r}")
        if not self.superseded:
            session.close(reason, code)

    def _follow_on(self, reason: str) -> bool:
        """With reconnect=always, a session the server ended (or a lost connection) is followed
        by a new one on the same call; True if that is under way."""
        session = self.session
        if self.superseded:
            return True
        if session.stopping or session.options["reconnect"] != "always" or reason == "stopped" \
                or session.reconnects >= MAX_RECONNECTS or reason.startswith("protocol error"):
            return False
        return session.reconnect_soon(reason)

    def _receive(self, ws: websocket.WebSocket) -> Tuple[str, Optional[int]]:
        watch = getattr(ws, "s2s_watch", None)
        if watch is None:   # websocket-client without the read hook: no turns
            turn: Any = contextlib.nullcontext()
        else:
            watch.take_turns(TURN)
            turn = watch
        while not self.session.stopping and not self.superseded:
            with turn:
                ended = self._receive_one(ws)
            if ended is not None:
                return ended
        return "stopped", None

    def _receive_one(self, ws: websocket.WebSocket) -> Optional[Tuple[str, Optional[int]]]:
        """Read and handle one message; the session's end (reason, close code), or None."""
        session = self.session
        proto = session.proto
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketTimeoutException, TimeoutError):
            return None
        except (websocket.WebSocketConnectionClosedException, OSError) as exc:
            return proto.end_reason or f"connection lost: {exc or 'closed'}", None
        except websocket.WebSocketException as exc:   # a frame the RFC does not allow
            return f"protocol error: {exc}", None
        self.last_rx = time.monotonic()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            self.events_in += 1
            with session.lock:
                actions = proto.server_event(data)
            session.run(actions)
        elif opcode == websocket.ABNF.OPCODE_BINARY:
            session.warn(WARNING, "binary", f"server sent a binary frame ({len(data)} bytes); ignored")
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            return proto.end_reason or "server closed", close_code(data)
        return None
