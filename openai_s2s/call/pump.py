"""One thread sends every session's caller audio and client events: the uplink pump.

A sender thread per call woke for every 20 ms frame, and in the switch those wake-ups,
not the work, were the cost: measured with perf at 25 calls, the per-call sender threads
took 45 % of the switch's CPU, two thirds of it in the kernel's futex and scheduler paths
(GIL and queue hand-offs). The pump wakes every ``TICK`` seconds whatever the number of
calls, or at once when a client event is queued, and asks each call's sender to send what
it has (:mod:`openai_s2s.call.uplink`).

A shared thread must never wait on one call's socket, so a sender writes a frame only when
the socket's send buffer has room for it (``transport.send_room``); otherwise the frame waits
for a later tick and the call's own uplink queue, bounded, takes the backlog.
"""
from __future__ import annotations

import threading
import time
from typing import Iterable, Protocol, Set

from ..log import ERR, log
from ..threads import OnDemandThread

TICK = 0.01


class Pumped(Protocol):
    """A call's sender (call/uplink.py): ``pump`` sends what the socket has room for, never blocking."""

    def pump(self, now: float, wait: bool = True) -> None: ...
    def pump_failed(self, exc: BaseException) -> None: ...
    def waiting_since(self) -> float: ...


class Pump(Protocol):
    """What a session's uplink is served by: this module's ``PUMP``, or a media path's own
    thread (``CallMedia.uplink_pump``, switch/unicast.py)."""
    def add(self, member: Pumped) -> None: ...
    def remove(self, member: Pumped) -> None: ...
    def wake(self) -> None: ...


class UplinkPump:
    """Runs while at least one sender is attached; the thread ends with the last one."""

    def __init__(self, tick: float = TICK, name: str = "s2s-uplink"):
        self.tick = tick
        self._members: Set[Pumped] = set()
        self._lock = threading.Lock()      # guards _members and the thread's start and end
        self._wake = threading.Event()
        self._worker = OnDemandThread(name, self._lock, lambda: bool(self._members), self._pass)

    def add(self, member: Pumped) -> None:
        with self._lock:
            self._members.add(member)
            self._worker.start()

    def remove(self, member: Pumped) -> None:
        with self._lock:
            self._members.discard(member)
        self._wake.set()

    def wake(self) -> None:
        """Send now rather than at the next tick (client events: a cancel must not wait)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._worker.running

    def _pass(self) -> None:
        self._wake.clear()   # before the sends: a wake() during them ends the next wait at once
        with self._lock:
            members = list(self._members)
        now = time.monotonic()
        pump_all(members, now)
        self._wake.wait(max(0.0, self.tick - (time.monotonic() - now)))


def pump_all(members: Iterable[Pumped], now: float, wait: bool = True) -> None:
    """One pass over the senders, on whichever thread serves them (this pump's, or the unicast
    media loop's for its calls, which must not wait: ``wait`` False)."""
    for member in members:
        try:
            member.pump(now, wait)
        except Exception as exc:   # one call's failure is that call's, never the pump's
            try:
                member.pump_failed(exc)
            except Exception as inner:
                log(ERR, f"uplink: a sender's failure handler failed: {inner!r}")


PUMP = UplinkPump()
