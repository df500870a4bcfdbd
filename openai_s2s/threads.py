"""A worker thread that exists only while it has work (the uplink pump and the unicast media
loop), and a lock taken in turn (the receivers').

Both serve every call from one thread, and neither may leave a thread behind when the last
call ends (``status`` counts the module's threads, and an idle switch should show none). The
thread ends under the owner's lock once there is no work, so work added after that, under the
same lock, starts a new one: none is ever lost between the two.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Deque, Optional

from . import native


class OnDemandThread:
    def __init__(self, name: str, lock: threading.Lock, has_work: Callable[[], bool],
                 step: Callable[[], None], on_exit: Optional[Callable[[], None]] = None):
        self.name = name
        self._lock = lock            # the owner's: guards its work and this thread's start and end
        self._has_work = has_work
        self._step = step
        self._on_exit = on_exit
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread if none runs; the caller holds the lock and has just added work."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True, name=self.name)
            self.thread.start()

    @property
    def running(self) -> bool:
        with self._lock:
            return self.thread is not None

    def _run(self) -> None:
        native.name_thread(self.name)
        while True:
            with self._lock:
                if not self._has_work():
                    self.thread = None   # under the lock: start() makes a new thread after this
                    break
            self._step()
        if self._on_exit is not None:
            self._on_exit()


class FairLock:
    """A lock handed to its waiters in the order they came.

    ``threading.Lock`` lets the thread that releases it take it straight back while a waiter
    is still waking, so a thread that takes it in a loop can keep it for as long as it has work.
    The receivers take one of these around each message: a server that floods one call gets
    one message handled per round, and every other call's receiver its turn in between.
    ``pause()`` lets no new holder in until ``resume()`` (the unicast loop, for its pass), and
    never waits itself; pauses nest."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._pauses = 0
        self._waiters: Deque[threading.Lock] = collections.deque()

    def pause(self) -> None:
        """No new holder until ``resume()``; whoever holds it now keeps it. Never waits."""
        with self._mutex:
            self._pauses += 1

    def resume(self) -> None:
        with self._mutex:
            if self._pauses:
                self._pauses -= 1
            if not self._pauses and not self._held and self._waiters:
                self._held = True
                self._waiters.popleft().release()

    def acquire(self) -> bool:
        with self._mutex:
            if not self._held and not self._pauses:
                self._held = True
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        gate.acquire()   # released by the holder's release(), which hands the lock over
        return True

    def release(self) -> None:
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._waiters and not self._pauses:
                self._waiters.popleft().release()   # still held: now by that waiter
            else:
                self._held = False

    def locked(self) -> bool:
        return self._held


class CappedPause:
    """Pauses a FairLock around a piece of work, for at most ``share`` of each ``window``.

    The unicast loop holds the receivers' turn off for its pass. A loop that falls behind would
    otherwise run passes back to back and leave the receivers one message a pass: their
    replies would stall and their pings go unread. Past the share, the work runs without the
    pause, the receivers taking turns beside it as they do with the media bug's pump."""

    def __init__(self, lock: FairLock, share: float, window: float = 1.0):
        self.lock = lock
        self.share = share
        self.window = window
        self._window_start = float("-inf")
        self._paused_for = 0.0
        self.skipped = 0    # passes run unpaused because the share was spent

    def begin(self, now: float) -> bool:
        """Pause the lock if this window's share is not spent; True if it did."""
        if now - self._window_start >= self.window:
            self._window_start, self._paused_for = now, 0.0
        if self._paused_for > self.share * self.window:
            self.skipped += 1
            return False
        self.lock.pause()
        return True

    def end(self, began: float, now: float) -> None:
        """After a ``begin`` that paused: resume the lock and count the time."""
        self.lock.resume()
        self._paused_for += now - began
