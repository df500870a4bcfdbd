"""A :class:`~.conversation.Conversation` on a websocket: websockets' asyncio server connection.

Everything here runs on the server's one event loop thread: the reads, the sends, the paced
responses (a task each) and the fault timers. :meth:`Connection.close` may be called from
any thread.
"""
from __future__ import annotations

import asyncio
from typing import Optional

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..realtime import service
from . import responses
from .conversation import Conversation
from .session import ServerOptions
from .wire import WebSocketSide, resolve


class Connection(WebSocketSide, Conversation):
    def __init__(self, server: ServerOptions, fault: Optional[str], loop: asyncio.AbstractEventLoop):
        Conversation.__init__(self, server, fault)
        self.attach(loop)
        self._waker: Optional["asyncio.Future[None]"] = None

    async def serve(self, ws: ServerConnection) -> None:
        """The connection's life after the upgrade: session.created, the faults, then the reads."""
        self.ws = ws
        try:
            self.begin()
            await self.flush()
            if self.faults.stall:
                # websockets reads and answers pings by itself for as long as the transport
                # reads, so a server that has stalled stops reading at the transport itself.
                ws.transport.pause_reading()
                await ws.wait_closed()
                return
            if self.faults.garbage:
                await ws.send(b"this is not json {", text=True)
            elif self.faults.binary:
                await ws.send(b"\x00\x01\x02")
            elif self.faults.expire_after is not None:
                self._loop.call_later(self.faults.expire_after, self._expire)
            while not self.stopped:
                self.handle(await ws.recv(decode=False))
                if self.outbox:
                    await self.flush()
        except ConnectionClosed:
            pass
        finally:
            await self.end_serving(ws)
            self.closed = True

    # streamed responses ----------------------------------------------------------------
    def run_response(self, run: responses.Run, steps: responses.Steps) -> None:
        self.spawn(self._drive(run, steps))

    async def _drive(self, run: responses.Run, steps: responses.Steps) -> None:
        try:
            for delay in steps:
                if self.outbox:
                    await self.flush()
                await self._pause(run, delay)
            if self.outbox:
                await self.flush()
        except ConnectionClosed:
            pass

    async def _pause(self, run: responses.Run, delay: float) -> None:
        """Wait ``delay`` seconds, or less when :meth:`wake` is called; a 0 still lets the
        reads in (a ``response.cancel`` among them)."""
        if delay <= 0:
            await asyncio.sleep(0)
            return
        if run.ended or self.stopped:
            return
        self._waker = waker = self._loop.create_future()
        timer = self._loop.call_later(delay, resolve, waker)
        try:
            await waker
        finally:
            timer.cancel()
            if self._waker is waker:   # a cancelled run's wait may end after the next began
                self._waker = None

    def wake(self) -> None:
        if self._waker is not None:
            resolve(self._waker)

    # the session limit -----------------------------------------------------------------
    def _expire(self) -> None:
        if not self.stopped:
            # the limit the real service at this path would have hit: 30 minutes for Azure's paths
            message = service.expired_message(service.session_limit(self.path))
            self.send_event("error", error={"type": "invalid_request_error", "code": "session_expired",
                                            "message": message})
            self.close(1000)
