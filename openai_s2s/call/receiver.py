"""One call's receiver thread: it opens the websocket, then reads the server's events into the
protocol and carries out what the protocol says.

    websocket --receiver--> protocol --> PlayoutBuffer / FreeSWITCH events
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional, Tuple

import websocket

from .. import native
from ..log import ERR, INFO, WARNING, log
from ..realtime.transport import ConnectError, close_code, open_websocket
from . import events


class Receiver:
    def __init__(self, session: Any):
        self.session = session
        self.last_rx = time.monotonic()
        self.events_in = 0
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
                session.tell_connect(events.CONNECT_FAILED, events.body(reason=str(exc)))
                session.close(f"connect_failed: {exc}")
                return
            if session.stopping:
                ws.shutdown()
                return
            self.last_rx = time.monotonic()
            session.housekeeping.expiry.start(self.last_rx)   # the service's clock starts about now
            session.connected(ws)
            if not session.tell_connect(events.CONNECT, events.body(url=endpoint.display_url,
                                                                    protocol=session.proto.generation)):
                ws.shutdown()   # session.delete came first, and has said connect_failed
                return
            log(INFO, f"[{session.uuid}] connected to {endpoint.display_url} ({session.proto.generation})")
            reason, code = self._receive(ws)
        except Exception as exc:  # never let a thread die silently
            reason = f"internal error: {exc!r}"
            log(ERR, f"[{session.uuid}] receiver failed: {exc!r}")
        session.close(reason, code)

    def _receive(self, ws: websocket.WebSocket) -> Tuple[str, Optional[int]]:
        session = self.session
        proto = session.proto
        while not session.stopping:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (websocket.WebSocketTimeoutException, TimeoutError):
                continue
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
        return "stopped", None
