"""A :class:`~.live.LiveConversation` on a websocket: the reads, the timers (startup,
acknowledgements, the ``expire_after`` fault) and the task that sends the mixer's output as
it falls due. Tests may inject server events from any thread (:meth:`LiveConnection.inject`).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, List, Optional

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .live import Cancellable, LiveConversation
from .session import ServerOptions
from .wire import WebSocketSide, resolve


class LiveConnection(WebSocketSide, LiveConversation):
    def __init__(self, server: ServerOptions, fault: Optional[str], loop: asyncio.AbstractEventLoop):
        LiveConversation.__init__(self, server, fault)
        self.attach(loop)
        self._timers: List[asyncio.TimerHandle] = []
        self._waker: Optional["asyncio.Future[None]"] = None
        self._kicked = False

    async def serve(self, ws: ServerConnection) -> None:
        """The connection's life after the upgrade. A passive socket receives nothing: the
        first server event answers the client's session.start."""
        self.ws = ws
        try:
            if self.faults.stall:
                ws.transport.pause_reading()   # as the Realtime connection's stall does
                await ws.wait_closed()
                return
            self.spawn(self._send_output())
            while not self.stopped:
                self.handle(await ws.recv(decode=False))
                if self.outbox:
                    await self.flush()
        except ConnectionClosed:
            pass
        finally:
            for timer in self._timers:
                timer.cancel()
            await self.end_serving(ws)
            self.closed = True

    # what the conversation asks of its I/O side -----------------------------------------
    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        def run() -> None:
            if not self.stopped:
                callback()
                self.output_ready()   # the output task sends what the callback queued
        timer = self._loop.call_later(delay, run)
        self._timers = [t for t in self._timers if not t.cancelled()] + [timer]
        return timer

    def output_ready(self) -> None:
        self._kicked = True
        if self._waker is not None:
            resolve(self._waker)

    def wake(self) -> None:
        self.output_ready()

    def session_began(self) -> None:
        """The faults that follow the session's first event, as the Realtime connection's
        follow session.created."""
        if self.faults.garbage:
            self.outbox.append(b"this is not json {")
        elif self.faults.binary:
            self.spawn(self._send_binary())
        elif self.faults.expire_after is not None:
            # wall time from session.started, not scaled by speed, as the Realtime fault
            self.schedule(self.faults.expire_after, lambda: self.finish("expired"))

    async def _send_binary(self) -> None:
        try:
            await self.flush()
            await self.ws.send(b"\x00\x01\x02")
        except ConnectionClosed:
            pass

    # the mixer's output ------------------------------------------------------------------
    async def _send_output(self) -> None:
        """Send the mixer's deltas as they fall due, and whatever a timer queued."""
        try:
            while not self.stopped:
                wait = self.pump(time.monotonic())
                if self.outbox:
                    await self.flush()
                await self._sleep(wait)
        except ConnectionClosed:
            pass

    async def _sleep(self, seconds: Optional[float]) -> None:
        """Until ``seconds`` have passed (None: no limit) or :meth:`output_ready` is called,
        also when it was called while this task was sending."""
        if self._kicked:
            self._kicked = False
            await asyncio.sleep(0)
            return
        self._waker = waker = self._loop.create_future()
        timer = self._loop.call_later(seconds, resolve, waker) if seconds is not None else None
        try:
            await waker
        finally:
            if timer is not None:
                timer.cancel()
            self._waker = None
            self._kicked = False

    # injected server events ----------------------------------------------------------------
    def inject(self, kind: str, **fields: Any) -> None:
        """Send a server event of the test's making (from any thread), after those queued."""
        self.call_on_loop(self._inject, kind, fields)

    def _inject(self, kind: str, fields: Any) -> None:
        self.send_event(kind, **fields)
        self.output_ready()

    def send_dtmf(self, digit: str = "5") -> None:
        """``transport.dtmf.send``: the server asks the transport to play a digit."""
        self.inject("transport.dtmf.send", event=digit)

    def send_info(self, code: str, message: str) -> None:
        self.inject("info", code=code, message=message)
