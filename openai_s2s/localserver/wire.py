"""What a connection does with its websocket whichever protocol it speaks (Realtime or
GPT-Live): send the queued events in order, run tasks that end with it, and close.

Everything here runs on the server's one event loop thread; :meth:`WebSocketSide.close`
may be called from any thread.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Deque, Optional, Set

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed


def resolve(future: "asyncio.Future[None]") -> None:
    """Wake whoever awaits ``future`` (once: a second wake-up is a no-op)."""
    if not future.done():
        future.set_result(None)


class WebSocketSide:
    """Mixed into a protocol class that provides ``outbox``, ``stopped``, ``close_code`` and
    ``wake`` (cut a wait short: the connection is closing)."""
    outbox: Deque[bytes]
    stopped: bool
    close_code: Optional[int]

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ws: Optional[ServerConnection] = None
        self._loop = loop
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._close_task: Optional["asyncio.Task[None]"] = None

    def wake(self) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        """Send what is queued, in order. Each frame is written before ``send`` can wait
        (for the socket to drain), so two flushes at once still keep the order."""
        while self.outbox:
            await self.ws.send(self.outbox.popleft(), text=True)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop until it ends or the connection does."""
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call_on_loop(self, callback: Callable[..., None], *args: Any) -> bool:
        """Run ``callback`` on the loop: now when called there, else soon; False when the
        loop is gone (a stopped server has closed its connections already)."""
        if self.on_loop():
            callback(*args)
            return True
        if self._loop.is_closed():
            return False
        self._loop.call_soon_threadsafe(callback, *args)
        return True

    async def end_serving(self, ws: ServerConnection) -> None:
        """After the reads: end the tasks, wait for our close, note how it closed."""
        self.stopped = True
        self.wake()
        for task in list(self._tasks):
            task.cancel()
        if self._close_task is not None:
            await self._close_task
        self.close_code = self.close_code or ws.close_code

    # closing ---------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: the events already queued go first, nothing after them."""
        if not self.on_loop():
            self.call_on_loop(self.close, code, reason)
            return
        if self.ws is None or self._close_task is not None:
            return
        self.stopped = True
        self.close_code = self.close_code or code
        self.wake()
        self._close_task = self._loop.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.flush()
        except ConnectionClosed:
            pass
        await self.ws.close(code, reason)
