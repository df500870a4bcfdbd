"""One thread sends every session's caller audio and client events: the uplink pump.

A sender thread per call woke for every 20 ms frame, and in the switch those wake-ups,
not the work, were the cost: measured with perf at 25 calls, the per-call sender threads
took 45 % of the switch's CPU, two thirds of it in the kernel's futex and scheduler paths
(GIL and queue hand-offs). The pump wakes every ``TICK`` seconds whatever the number of
calls, or at once when a client event is queued, and asks each session to send what it has.

A shared thread must never wait on one call's socket, so a session sends a frame only when
the socket's send buffer has room for it (see ``send_room``); otherwise the frame waits for
a later tick and the call's own uplink queue, bounded, takes the backlog.
"""
from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from typing import Any, Protocol, Set

from .log import ERR, log

TICK = 0.01


class Pumped(Protocol):
    def pump(self, now: float) -> None: ...
    def pump_failed(self, exc: BaseException) -> None: ...


def unsent_bytes(sock: Any) -> int:
    """Bytes queued on a TCP socket and not yet acknowledged (Linux SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return struct.unpack("i", raw)[0]


def send_room(sock: Any) -> int:
    """Bytes that can be written to ``sock`` now without the write blocking.

    The kernel blocks a writer once the queued buffers' true size reaches SO_SNDBUF; the
    true size of a buffer is more than its payload, so only half of SO_SNDBUF is counted
    as room. Where the socket cannot be asked (not Linux, a test double), say there is room."""
    try:
        budget = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        return budget - unsent_bytes(sock)
    except (OSError, AttributeError, ValueError):
        return 1 << 30


class UplinkPump:
    """Runs while at least one session is attached; the thread ends with the last one."""

    def __init__(self, tick: float = TICK, name: str = "s2s-uplink"):
        self.tick = tick
        self.name = name
        self._sessions: Set[Pumped] = set()
        self._lock = threading.Lock()      # guards _sessions and _thread only
        self._wake = threading.Event()
        self._thread: "threading.Thread | None" = None

    def add(self, session: Pumped) -> None:
        with self._lock:
            self._sessions.add(session)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()

    def remove(self, session: Pumped) -> None:
        with self._lock:
            self._sessions.discard(session)
        self._wake.set()

    def wake(self) -> None:
        """Send now rather than at the next tick (client events: a cancel must not wait)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _run(self) -> None:
        from .session import _name_native_thread   # the one place that names OS threads
        _name_native_thread()
        while True:
            self._wake.clear()   # before the sends: a wake() during them ends the next wait at once
            with self._lock:
                if not self._sessions:
                    self._thread = None   # under the lock: add() starts a new thread after this
                    return
                sessions = list(self._sessions)
            now = time.monotonic()
            for session in sessions:
                try:
                    session.pump(now)
                except Exception as exc:   # one call's failure is that call's, never the pump's
                    try:
                        session.pump_failed(exc)
                    except Exception as inner:
                        log(ERR, f"uplink: a session's failure handler failed: {inner!r}")
            self._wake.wait(max(0.0, self.tick - (time.monotonic() - now)))


PUMP = UplinkPump()
