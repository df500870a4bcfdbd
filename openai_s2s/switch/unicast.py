"""Call media through FreeSWITCH's unicast mode: no Python on the switch's media threads.

In the default mode a media bug runs a Python callback on each call's media thread once per
frame, and every callback has to take the GIL. At 100 calls on 2 cores that hand-off, not the
work, is what makes frames late (README, "Performance"). A parked channel can stream its audio
by itself instead: with unicast active (``switch_ivr_activate_unicast``, what ESL's ``unicast``
command uses) the park loop sends each frame it reads, decoded to L16, as a UDP datagram, and
a C thread of the switch writes each datagram it receives to the channel. Here one Python
thread, ``s2s-media``, serves every such call: it takes the callers' frames off one loopback
socket and, once per frame time, sends each call its next frame of the model.

What the switch imposes (switch_ivr.c, switch_ivr_park):
- parked channels only: the park loop is what sends; a call that leaves park ends the session;
- ``send_silence_when_idle`` must be off: park would write its silence between our frames;
- unicast stays on until the call leaves park (park keeps the first connection it saw, so it
  cannot be turned off and on again): after session.delete the channel's frames still arrive
  here and are dropped, and a new session on the call reuses the same ports;
- the channel writes only what we send: when the model is silent, nothing is written, and
  ``playout_mode=mix`` has nothing to mix with.

The FreeSWITCH half (activating unicast, checking it is still on) is the channel object's:
:class:`openai_s2s.switch.bug.FsCall` in the switch, an honest double in the tests.
"""
from __future__ import annotations

import ctypes
import operator
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .. import native
from ..call.pump import Pumped, pump_all
from ..call.receiver import TURN
from ..log import ERR, WARNING, log
from ..media.meters import GapMeter
from ..threads import CappedPause, OnDemandThread

LOOPBACK = "127.0.0.1"
CHECK_INTERVAL = 0.5   # seconds between checks that a call still has its unicast connection
CATCH_UP = 3           # most frames sent to one call in one pass when the loop woke late
SLOTS = 4              # phases of the frame grid a call may move to when its audio starts
IDLE_WAIT = 0.1        # the loop's sleep with no call
UPLINK_WAIT = 0.02     # the longest sleep while it serves an uplink (housekeeping's tick)
UPLINK_GROUP = 10      # uplinks pumped between two looks at the frames due
TURN_SHARE = 0.7       # most of each second the passes may hold the receivers off
_MAX_DATAGRAM = 8192   # SWITCH_RECOMMENDED_BUFFER_SIZE: the park loop never sends more
_WAITING_SINCE = operator.methodcaller("waiting_since")


# libc sendto/recvfrom keep the GIL (native.py): the loop sends and takes a datagram per call per frame
_LIBC = ((native.libc_sendto, native.libc_recvfrom)
         if native.libc_sendto is not None and native.libc_recvfrom is not None else None)
_RECVMSG = native.libc_recvmsg if _LIBC is not None else None
_CONTROL = 64   # room for one SCM_TIMESTAMPNS message (32 bytes)
_CMSG = struct.Struct("=Qii")     # cmsg_len, cmsg_level, cmsg_type
_TIMESPEC = struct.Struct("=qq")  # tv_sec, tv_nsec
STAMP_SANE = 1.0   # a kernel stamp further than this from the clock (a wall-clock step) is not used


def sockaddr_in(host: str, port: int) -> bytes:
    """struct sockaddr_in: family in host order, port in network order."""
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def free_udp_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the caller may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class MediaLoop:
    """One thread and one UDP socket for every unicast call.

    The same thread is its calls' uplink pump (``uplinks``): right after it takes the
    callers' frames off the socket it sends them, so a frame waits for no other thread and
    no GIL hand-off separates the two steps. At 100 parked calls, chunk 20 (docs/performance.md,
    the same machine): with the shared pump (call/pump.py) beside this loop the two threads
    took 84-92 % of a core, 14,223 frames were late at worst and the worst call's uplink p99
    was 100-286 ms; this loop alone 77-83 %, no late frame and 46-86 ms.
    """

    def __init__(self, host: str = LOOPBACK):
        self.host = host
        self._calls: Dict[int, "UnicastCall"] = {}   # by the switch-side port; replaced, never mutated
        self._uplinks: Tuple[Pumped, ...] = ()       # the calls' senders; replaced, never mutated
        self.uplinks = LoopPump(self)
        self._lock = threading.Lock()   # add/remove, and the thread's start and end
        self._passes = 0
        self._pass_done = threading.Condition()
        self._wake = threading.Event()   # set by a call whose audio starts between ticks
        self._sock: Optional[socket.socket] = None
        self._worker = OnDemandThread("s2s-media", self._lock, lambda: bool(self._calls or self._uplinks),
                                      self._step, on_exit=self._notify_pass)
        self._epoch = time.monotonic()
        self._buf = ctypes.create_string_buffer(_MAX_DATAGRAM)
        self._addr = ctypes.create_string_buffer(16)
        self._addrlen = ctypes.c_uint32(16)
        # With SO_TIMESTAMPNS each frame carries the time the kernel took it off loopback, so its
        # uplink latency counts the time it waited here for the loop's next wake (up to a frame
        # time: the loop wakes on its calls' frame grid, not for each datagram).
        self._control = ctypes.create_string_buffer(_CONTROL)
        self._iov = native.IoVec(ctypes.addressof(self._buf), _MAX_DATAGRAM)
        self._msg = native.MsgHdr(ctypes.addressof(self._addr), 16, ctypes.pointer(self._iov), 1,
                                  ctypes.addressof(self._control), _CONTROL, 0)
        self._msg_ref = ctypes.byref(self._msg)
        self._stamped = False      # the socket gives receive times (recvmsg, SO_TIMESTAMPNS)
        self._wall_offset = 0.0    # time.time() - time.monotonic(), taken each pass
        self._fd = -1
        self.datagrams_dropped = 0   # from a port no call owns (a deleted session's channel)
        # The receivers wait for their turn while a pass runs (they take it in turn, each for one
        # message: call/receiver.py), so that their Python does not share the GIL with the pass
        # every 0.5 ms and stretch it. The receiver holding the turn when a pass begins finishes
        # its message. (docs/performance.md, "The receivers held off during the loop's pass")
        self._turn = CappedPause(TURN, TURN_SHARE)
        self._turn_warned = float("-inf")

    def port(self) -> int:
        """The loop's own port. It never changes once bound: the switch keeps sending a parked
        call's frames to it after session.delete, and a new session on the call reuses it."""
        with self._lock:
            if self._sock is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((self.host, 0))
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                if _RECVMSG is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, native.SO_TIMESTAMPNS, 1)
                        self._stamped = True
                    except OSError:
                        self._stamped = False
                self._sock, self._fd = sock, sock.fileno()
            return self._sock.getsockname()[1]

    @property
    def running(self) -> bool:
        return self._worker.running

    def ports_in_use(self) -> frozenset:
        return frozenset(self._calls)

    def next_tick(self, now: float, period: float) -> float:
        """The first tick of a ``period`` grid at or after ``now``: calls of the same ptime
        share ticks, so the loop wakes once per frame time, not once per call."""
        ticks = -(-((now - self._epoch) / period - 1e-6) // 1)   # ceil, but a tick is its own
        return self._epoch + ticks * period

    def wake(self) -> None:
        self._wake.set()

    def add(self, fs_port: int, call: "UnicastCall") -> None:
        self.port()
        with self._lock:
            if fs_port in self._calls:
                raise RuntimeError(f"unicast port {fs_port} is already in use by a session")
            calls = dict(self._calls)
            calls[fs_port] = call
            self._calls = calls
            if self._worker.thread is None:   # a thread only while there are calls
                while self._receive() is not None:   # sent while no loop ran (deleted sessions): stale
                    self.datagrams_dropped += 1
                self._worker.start()

    def add_uplink(self, member: Pumped) -> None:
        with self._lock:
            if member not in self._uplinks:
                self._uplinks = self._uplinks + (member,)
            self._worker.start()

    def remove_uplink(self, member: Pumped) -> None:
        """As the shared pump's remove: a pass under way may still call ``member`` once."""
        with self._lock:
            self._uplinks = tuple(m for m in self._uplinks if m is not member)
        self._wake.set()

    def remove(self, fs_port: int, call: "UnicastCall") -> None:
        """When this returns the loop is not serving ``call`` and never will again."""
        with self._lock:
            if self._calls.get(fs_port) is not call:
                return
            calls = dict(self._calls)
            del calls[fs_port]
            self._calls = calls
            thread = self._worker.thread
        if thread is None or thread is threading.current_thread():
            return   # no loop, or the loop's own pass (a call that left park): it sees the new dict next
        with self._pass_done:
            # A pass takes its snapshot of the calls after its sleep, so the first pass to end
            # from now on may still hold the old one; every later pass has the new one.
            target = self._passes + 2
            if not self._pass_done.wait_for(lambda: self._passes >= target or self._worker.thread is not thread,
                                            timeout=1.0):
                log(ERR, "openai_s2s unicast: the media loop did not finish a pass in 1 s")

    def send(self, address: bytes, port: int, pcm: bytes) -> bool:
        sock = self._sock
        if sock is None:
            return False
        if _LIBC is not None:
            return _LIBC[0](sock.fileno(), pcm, len(pcm), socket.MSG_DONTWAIT, address, 16) == len(pcm)
        try:
            return sock.sendto(pcm, (self.host, port)) == len(pcm)
        except OSError:
            return False

    def _receive(self) -> Optional[tuple]:
        """One waiting datagram as (source port, bytes, monotonic time the kernel received it
        or None), or None."""
        if self._stamped:
            msg = self._msg
            msg.namelen, msg.controllen = 16, _CONTROL
            size = _RECVMSG(self._fd, self._msg_ref, socket.MSG_DONTWAIT)
            if size < 0:
                return None
            at = None
            if msg.controllen >= native.CMSG_HEADER + _TIMESPEC.size:
                _, level, kind = _CMSG.unpack_from(self._control, 0)
                if level == socket.SOL_SOCKET and kind == native.SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(self._control, native.CMSG_HEADER)
                    at = sec + nsec * 1e-9 - self._wall_offset
            return struct.unpack_from("!H", self._addr, 2)[0], ctypes.string_at(self._buf, size), at
        sock = self._sock
        if _LIBC is not None:
            self._addrlen.value = 16
            size = _LIBC[1](sock.fileno(), self._buf, _MAX_DATAGRAM, socket.MSG_DONTWAIT,
                            self._addr, ctypes.byref(self._addrlen))
            if size < 0:
                return None
            return struct.unpack_from("!H", self._addr, 2)[0], ctypes.string_at(self._buf, size), None
        try:
            data, (_, port) = sock.recvfrom(_MAX_DATAGRAM)
        except OSError:
            return None
        return port, data, None

    def _step(self) -> None:
        try:
            self._pass()
        except Exception as exc:   # the loop serves every call: it must not die
            log(ERR, f"openai_s2s unicast: media loop error {exc!r}")
            time.sleep(0.01)
        with self._pass_done:
            self._passes += 1
            self._pass_done.notify_all()

    def _notify_pass(self) -> None:
        with self._pass_done:
            self._pass_done.notify_all()

    def _pass(self) -> None:
        calls = self._calls
        now = time.monotonic()
        wake = min((call.due for call in calls.values()), default=now + IDLE_WAIT)
        if self._uplinks:
            wake = min(wake, now + UPLINK_WAIT)
        if wake > now:
            self._wake.wait(wake - now)
        self._wake.clear()   # before looking at the calls: a start after this sets it again
        began = time.monotonic()
        paused = self._turn.begin(began)
        if not paused and began - self._turn_warned > 60:
            self._turn_warned = began
            log(WARNING, f"openai_s2s unicast: the media loop's passes took over {TURN_SHARE:.0%} of a "
                         "second; the receivers now run beside them (the machine is short of CPU)")
        try:
            self._serve_and_pump()
        finally:
            if paused:
                self._turn.end(began, time.monotonic())

    def _serve_and_pump(self) -> None:
        calls = self._calls   # after the sleep: see remove()
        now = time.monotonic()
        self._wall_offset = time.time() - now
        self._take_datagrams(calls, now, 4 * len(calls) + 8)   # what arrived during one frame, and more
        next_due = self._serve_due(calls)
        # After the frames due are out, the uplinks, a group at a time: a frame that falls due
        # meanwhile, or a response's first frame (audio_ready), goes out between two groups
        # rather than after every call's sends (in the switch at 100 calls the sends took half of
        # the loop's CPU, about 9 ms of every 20). Before each group the loop takes the callers'
        # frames that arrived since: a call whose frame came just after the tick (the one that
        # would wait longest, a whole frame time) sends it in this pass if its group is still to
        # come (100 calls: uplink p50 28.6-29.8 ms against 31.6-32.7).
        uplinks = self._uplinks
        if len(uplinks) > UPLINK_GROUP:
            # The calls whose audio has waited longest go first: where a call falls in the pass
            # is part of its latency, and the pass takes several milliseconds at 100 calls. The
            # sort costs 41 us a pass there; the worst call's uplink p99 went from 48-62 ms to
            # 43-45 (100 parked and agent calls, six runs each, docs/performance.md).
            uplinks = sorted(uplinks, key=_WAITING_SINCE)
        for start in range(0, len(uplinks), UPLINK_GROUP):
            if start:
                self._take_datagrams(calls, time.monotonic(), len(calls) + 8)
            pump_all(uplinks[start:start + UPLINK_GROUP], time.monotonic(), wait=False)
            if self._wake.is_set() or time.monotonic() >= next_due:
                self._wake.clear()
                next_due = self._serve_due(calls)

    def _take_datagrams(self, calls: Dict[int, "UnicastCall"], now: float, bound: int) -> None:
        """Hand each waiting caller frame (at most ``bound``) to its call."""
        for _ in range(bound):
            got = self._receive()
            if got is None:
                return
            call = calls.get(got[0])
            if call is None:
                self.datagrams_dropped += 1
            else:
                at = got[2]
                if at is not None and not now - STAMP_SANE < at <= now + STAMP_SANE:
                    at = None
                _guarded(call, call._datagram, (got[1], at))

    def _serve_due(self, calls: Dict[int, "UnicastCall"]) -> float:
        """Every call's frame that is due; returns when the next one falls due."""
        now = time.monotonic()
        next_due = float("inf")
        for call in calls.values():
            if call.starts != call._starts_seen:
                call._reschedule(now)
            if now >= call.due:
                _guarded(call, call._serve, now)
            if now >= call.check_at:
                _guarded(call, call._check, now)
            if call.due < next_due:
                next_due = call.due
        return next_due


def _guarded(call: "UnicastCall", step: Callable[[Any], None], arg: Any) -> None:
    """One call's failure must not stop the loop serving the others."""
    try:
        step(arg)
    except Exception as exc:
        call.errors += 1
        if call.errors in (1, 10, 100, 1000):
            log(ERR, f"[{call.uuid}] unicast media: {exc!r} ({call.errors} so far)")


class LoopPump:
    """The media loop as a session's uplink pump (call/pump.py's ``Pump``)."""

    def __init__(self, loop: MediaLoop):
        self._loop = loop

    def add(self, member: Pumped) -> None:
        self._loop.add_uplink(member)

    def remove(self, member: Pumped) -> None:
        self._loop.remove_uplink(member)

    def wake(self) -> None:
        self._loop.wake()


LOOP = MediaLoop()   # the process's one loop: this module is never reloaded


class UnicastCall:
    """host.CallMedia for a parked channel in unicast mode.

    ``channel`` is the switch's side: ``uuid``, ``rate``, ``frame_samples``, ``variable(name)``,
    ``start_unicast(host, port, avoid) -> switch-side port`` (raises RuntimeError) and
    ``unicast_alive() -> bool``.
    """

    def __init__(self, channel: Any, loop: Optional[MediaLoop] = None):
        self.channel = channel
        self.uuid = channel.uuid
        self.rate = channel.rate
        self.frame_samples = channel.frame_samples
        self.frame_seconds = channel.frame_samples / channel.rate
        self.mix = False
        self._loop = loop or LOOP
        self._fs_port = 0
        self._address = b""
        self._capture: Optional[Callable[[bytes], None]] = None
        self._playout: Optional[Callable[[], Optional[bytes]]] = None
        self._closed: Optional[Callable[[], None]] = None
        self._active: Callable[[], bool] = lambda: False   # the model has audio now or to come
        self._attached = False
        self.due = float("inf")
        self.check_at = float("inf")
        self.starts = 0         # audio_ready() calls: the session's thread writes it
        self._starts_seen = 0   # the loop's
        self._last_sent = float("-inf")
        self.gaps = GapMeter()   # between frames offered to the switch (sent, or nothing to send)
        # counters, written by the loop's thread only
        self.frames_read = self.frames_written = self.ticks = self.send_failures = self.errors = 0
        self.frame_bytes = channel.frame_samples * 2
        self.frames_mismatched = 0
        self._mismatched = False
        self.callback_seconds = 0.0

    @property
    def uplink_pump(self) -> "LoopPump":
        """The loop that takes this call's frames also sends them (host.CallMedia)."""
        return self._loop.uplinks

    def variable(self, name: str) -> Optional[str]:
        return self.channel.variable(name)

    # call control: the channel's own
    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.channel.hangup(cause)

    def transfer(self, extension: str, dialplan: Optional[str], context: Optional[str]) -> bool:
        return self.channel.transfer(extension, dialplan, context)

    def send_dtmf(self, digits: str) -> None:
        self.channel.send_dtmf(digits)

    def attach(self, capture, playout, closed, mix: bool = True, active=None) -> None:
        if self._attached:
            raise RuntimeError("already attached")
        loop_port = self._loop.port()
        fs_port = self.channel.start_unicast(self._loop.host, loop_port, self._loop.ports_in_use())
        self._capture, self._playout, self._closed = capture, playout, closed
        self._active = active or (lambda: False)
        self._fs_port, self._address = fs_port, sockaddr_in(self._loop.host, fs_port)
        now = time.monotonic()
        self.due, self.check_at = self._loop.next_tick(now, self.frame_seconds), now + CHECK_INTERVAL
        self._loop.add(fs_port, self)
        self._attached = True

    def detach(self) -> None:
        if self._attached:
            self._attached = False
            self._loop.remove(self._fs_port, self)

    def audio_ready(self) -> None:
        """The model's audio was queued with nothing ahead of it (a response starts, or resumes
        after an underrun). Its first frame need not wait for the call's next tick: the loop
        moves the call to the first slot of the grid at which a frame can go. The switch writes
        what we send when we send it, so the call's frame times are ours to choose."""
        self.starts += 1
        self._loop.wake()

    def stats(self) -> Dict[str, Any]:
        return {"media": "unicast", "unicast_port": self._fs_port,
                "frames_read": self.frames_read, "frames_written": self.frames_written,
                "ticks": self.ticks, "send_failures": self.send_failures, "errors": self.errors,
                "frames_mismatched": self.frames_mismatched, **self.gaps.stats(),
                "callback_ms": round(self.callback_seconds * 1000, 1)}

    # the loop's thread ------------------------------------------------------------
    def _datagram(self, got: Tuple[bytes, Optional[float]]) -> None:
        # The park loop sends the channel's frames as they are: another size means the codec
        # changed mid-call. Neither take them nor send ours (they would be partial frames there).
        pcm, at = got
        self._mismatched = len(pcm) != self.frame_bytes
        if self._mismatched:
            self.frames_mismatched += 1
            return
        self.frames_read += 1
        if at is None:
            self._capture(pcm)
        else:
            self._capture(pcm, at)

    def _serve(self, now: float) -> None:
        start = time.thread_time()
        sent = False
        try:
            for _ in range(CATCH_UP):
                self.due += self.frame_seconds   # first: a failing playout must not spin the loop
                sent = self._frame(now)
                if self.due > now:
                    break
        finally:
            if self.due <= now:   # still behind after catching up: restart the clock from now
                self.due = self._loop.next_tick(now + 1e-6, self.frame_seconds)
            else:
                self._toward_grid(sent)
            self.callback_seconds += time.thread_time() - start

    def _toward_grid(self, sent: bool) -> None:
        """Bring a call that a response moved off the loop's frame grid back onto it: every
        call on the grid is served in the same wake, and a wake is the loop's largest cost at
        few calls (a pass costs about the same whether it serves one call or ten). A call
        with nothing to play moves at once (nothing is heard to stretch); one that plays moves
        a slot a frame, each frame a quarter frame later than its time (25 ms gaps, at most
        SLOTS - 1 of them a response), never sooner."""
        grid = self._loop.next_tick(self.due, self.frame_seconds)
        if grid - self.due < 1e-6:
            return
        if sent or self._active():
            self.due = min(grid, self.due + self.frame_seconds / SLOTS)
        else:
            self.due = grid

    def _reschedule(self, now: float) -> None:
        """Bring the next frame forward to the earliest slot at which it keeps a frame time
        after the last one sent (the far end must not get two frames closer than that). The
        slots are a quarter of the frame grid, so the loop wakes at most SLOTS times a frame
        time however the calls fall, and a start waits at most a quarter frame."""
        self._starts_seen = self.starts
        earliest = max(now, self._last_sent + self.frame_seconds)
        slot = self._loop.next_tick(earliest, self.frame_seconds / SLOTS)
        if slot < self.due:
            self.due = slot

    def _frame(self, now: float) -> bool:
        """Offer the call its next frame; True if one went to the switch."""
        self.gaps.frame(now)
        self.ticks += 1
        pcm = self._playout()
        if pcm is None or self._mismatched:
            return False
        if self._loop.send(self._address, self._fs_port, pcm):
            self.frames_written += 1
            self._last_sent = now
            return True
        self.send_failures += 1
        return False

    def _check(self, now: float) -> None:
        self.check_at = now + CHECK_INTERVAL
        try:
            alive = self.channel.unicast_alive()
        except Exception as exc:
            log(WARNING, f"[{self.uuid}] unicast check failed: {exc!r}")
            alive = True
        if alive:
            return
        self._attached = False
        self._loop.remove(self._fs_port, self)
        closed = self._closed
        if closed is not None:
            closed()
