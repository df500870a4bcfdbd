"""The media bug's two halves without a switch: the pump pulls the caller's frames from the capture
bug, and the playout bug pauses itself while the model has nothing to say.

The fake library below keeps the rules of switch_core_media_bug.c that the module relies on: a
bug with SMBF_LOCK is refused by switch_core_media_bug_remove, a bug with SMBF_PAUSE is not
called, and a read with fill=TRUE returns whole frames only. The real switch runs the same paths
in tests/test_realswitch.py.
"""
import ctypes
import time
from typing import Dict, List, Optional

import pytest

from openai_s2s import native
from openai_s2s.call.uplink import UplinkSender
from openai_s2s.media.formats import PCM24
from openai_s2s.switch import bug as bugmod
from openai_s2s.switch.bug import FsCall

FRAME = 320   # 20 ms at 8 kHz


class FakeBug:
    def __init__(self, name: bytes, callback, user_data, flags: int):
        self.name, self.callback, self.user_data, self.flags = name, callback, user_data, flags
        self.buffer = bytearray()
        self.attached = True
        self.frame = native.SwitchFrame()
        self._out = ctypes.create_string_buffer(FRAME)
        self.frame.data = ctypes.cast(self._out, ctypes.c_void_p)
        self.frame.buflen = FRAME


def key(ptr) -> int:
    """A bug pointer as bug.py passes it: a c_void_p it holds, or the int a callback was given."""
    return ptr.value if isinstance(ptr, ctypes.c_void_p) else ptr


class FakeLib:
    """What bug.py calls of libfreeswitch, with the switch's rules for flags and removal."""

    def __init__(self, pause_known: bool = True):
        self.pause_known = pause_known
        self.bugs: Dict[int, FakeBug] = {}
        self._next = 1000
        self.removals_refused = 0

    # sessions: one, always there
    def switch_core_session_perform_locate(self, *args):
        return 1

    def switch_core_session_rwunlock(self, session):
        pass

    def switch_core_session_get_channel(self, session):
        return 2

    def switch_core_media_bug_add(self, session, name, target, callback, user_data, stop, flags, out):
        self._next += 1
        self.bugs[self._next] = FakeBug(name, callback, user_data, flags)
        out._obj.value = self._next
        return native.SWITCH_STATUS_SUCCESS

    def switch_core_media_bug_remove(self, session, ref):
        bug = self.bugs.get(ref._obj.value)
        if bug is None or not bug.attached:
            return native.SWITCH_STATUS_FALSE
        if bug.flags & native.SMBF_LOCK:
            self.removals_refused += 1
            return native.SWITCH_STATUS_FALSE
        self.close(ref._obj.value)
        return native.SWITCH_STATUS_SUCCESS

    def switch_core_media_bug_set_flag(self, ptr, flag):
        ptr = key(ptr)
        self.bugs[ptr].flags |= flag
        return self.bugs[ptr].flags

    def switch_core_media_bug_clear_flag(self, ptr, flag):
        ptr = key(ptr)
        self.bugs[ptr].flags &= ~flag
        return self.bugs[ptr].flags

    def switch_core_media_bug_read(self, ptr, frame_ref, fill):
        ptr = key(ptr)
        bug = self.bugs[ptr]
        frame = frame_ref._obj
        if len(bug.buffer) < FRAME:
            return native.SWITCH_STATUS_FALSE
        ctypes.memmove(frame.data, bytes(bug.buffer[:FRAME]), FRAME)
        del bug.buffer[:FRAME]
        frame.datalen = FRAME
        return native.SWITCH_STATUS_SUCCESS

    def switch_core_media_bug_flush(self, ptr):
        ptr = key(ptr)
        self.bugs[ptr].buffer.clear()

    def switch_core_media_bug_get_write_replace_frame(self, ptr):
        ptr = key(ptr)
        return ctypes.pointer(self.bugs[ptr].frame)

    def switch_core_media_bug_set_write_replace_frame(self, ptr, frame):
        pass

    # the switch's side
    def by_name(self, name: bytes) -> int:
        return next(p for p, b in self.bugs.items() if b.name == name and b.attached)

    def read_frame(self, pcm: bytes) -> None:
        """The channel read a frame: into the capture bug's buffer."""
        self.bugs[self.by_name(bugmod.CAPTURE_BUG_NAME)].buffer += pcm

    def write_frame(self) -> bool:
        """The channel writes a frame: the playout bug's callback, unless paused. True if called."""
        ptr = self.by_name(bugmod.BUG_NAME)
        bug = self.bugs[ptr]
        if bug.flags & native.SMBF_PAUSE and self.pause_known:
            return False
        bug.frame.datalen = 0
        bug.callback(ptr, bug.user_data, native.SWITCH_ABC_TYPE_WRITE_REPLACE)
        return True

    def close(self, ptr: int) -> None:
        bug = self.bugs[ptr]
        bug.attached = False
        if bug.callback:
            bug.callback(ptr, bug.user_data, native.SWITCH_ABC_TYPE_CLOSE)

    def hangup(self) -> None:
        """remove_all at hangup: locked bugs are passed by."""
        for ptr, bug in list(self.bugs.items()):
            if bug.attached and not bug.flags & native.SMBF_LOCK:
                self.close(ptr)


class Engine:
    """The session's side: what it captures, and a playout queue."""

    def __init__(self):
        self.captured: List[tuple] = []
        self.queue: List[bytes] = []
        self.streaming = False
        self.closed = 0
        self.during_playout = None   # run inside playout(): another thread getting in meanwhile

    def capture(self, pcm: bytes, at: Optional[float] = None) -> None:
        self.captured.append((pcm, at))

    def playout(self) -> Optional[bytes]:
        frame = self.queue.pop(0) if self.queue else None
        if self.during_playout is not None:
            self.during_playout()
        return frame

    def active(self) -> bool:
        return bool(self.queue) or self.streaming

    def on_closed(self) -> None:
        self.closed += 1


def attached(pause_known: bool = True):
    lib, engine = FakeLib(pause_known), Engine()
    call = FsCall(lib, "0123456789abcdef", 8000, 160)
    call.attach(engine.capture, engine.playout, engine.on_closed, mix=False, active=engine.active)
    return lib, engine, call


def playout_bug(lib: FakeLib) -> FakeBug:
    return lib.bugs[lib.by_name(bugmod.BUG_NAME)]


def test_the_pump_takes_the_callers_frames_from_the_capture_bug_with_their_times():
    lib, engine, call = attached()
    frames = [bytes([i]) * FRAME for i in range(3)]
    for pcm in frames:
        lib.read_frame(pcm)
    lib.read_frame(b"\x09" * (FRAME // 2))   # half a frame: not yet
    before = time.monotonic()
    call.pull_capture()
    after = time.monotonic()
    assert [pcm for pcm, _ in engine.captured] == frames
    stamps = [at for _, at in engine.captured]
    assert stamps[1] - stamps[0] == pytest.approx(0.02) and stamps[2] - stamps[1] == pytest.approx(0.02)
    assert before <= stamps[-1] <= after    # the newest is taken as just arrived
    assert call.frames_read == 3
    call.pull_capture()
    assert len(engine.captured) == 3     # the half frame waits


def test_a_pull_that_finds_more_than_it_takes_flushes_the_rest():
    lib, engine, call = attached()
    for _ in range(bugmod.MAX_PULL + 7):
        lib.read_frame(b"\x01" * FRAME)
    call.pull_capture()
    assert len(engine.captured) == bugmod.MAX_PULL and call.capture_flushes == 1
    call.pull_capture()
    assert len(engine.captured) == bugmod.MAX_PULL


def test_the_playout_bug_pauses_when_the_model_has_nothing_and_audio_resumes_it():
    lib, engine, call = attached()
    engine.streaming = True                 # a response still arriving: an underrun, not the end
    assert lib.write_frame() and lib.write_frame()
    assert not playout_bug(lib).flags & native.SMBF_PAUSE
    engine.streaming = False
    assert lib.write_frame()                # nothing, and nothing coming: it pauses
    assert playout_bug(lib).flags & native.SMBF_PAUSE and call.write_paused and call.pauses == 1
    assert not lib.write_frame() and not lib.write_frame()   # the switch calls nothing
    engine.queue.append(b"\x05" * FRAME)
    call.audio_ready()
    assert not playout_bug(lib).flags & native.SMBF_PAUSE and not call.write_paused
    assert lib.write_frame()
    assert bytes(ctypes.string_at(playout_bug(lib).frame.data, FRAME)) == b"\x05" * FRAME
    assert call.frames_written == 1


def test_audio_that_comes_while_the_callback_is_pausing_is_not_left_behind_a_pause():
    lib, engine, call = attached()

    def receiver_meanwhile():   # the receiver queues audio after playout() found none
        engine.during_playout = None
        engine.queue.append(b"\x07" * FRAME)
        call.audio_ready()
    # audio_ready alone would clear a flag not yet set; the callback then sets it: the count
    # that audio_ready moved is what makes the callback take its pause back
    engine.during_playout = receiver_meanwhile
    engine.queue.clear()
    real_active = engine.active
    engine.active = lambda: False          # as the callback saw it, before the audio came
    call._active = engine.active
    assert lib.write_frame()
    call._active = real_active
    assert not playout_bug(lib).flags & native.SMBF_PAUSE and not call.write_paused
    assert lib.write_frame() and call.frames_written == 1


def test_the_pump_resumes_a_paused_bug_that_has_audio_waiting():
    lib, engine, call = attached()
    assert lib.write_frame() and call.write_paused
    engine.queue.append(b"\x02" * FRAME)    # queued without audio_ready (behind a partial frame)
    call.pull_capture()
    assert not playout_bug(lib).flags & native.SMBF_PAUSE
    assert lib.write_frame() and call.frames_written == 1


def test_a_switch_that_calls_a_paused_bug_gets_no_more_pauses():
    lib, engine, call = attached(pause_known=False)
    assert lib.write_frame() and call.pauses == 1
    assert lib.write_frame()                # called all the same: SMBF_PAUSE is unknown there
    assert not call.can_pause and not playout_bug(lib).flags & native.SMBF_PAUSE
    for _ in range(5):
        assert lib.write_frame()
    assert call.pauses == 1 and call.write_callbacks == 7
    # and the gap meter measures every frame again
    assert sum(call.gaps.histogram) == 5


def test_hangup_leaves_the_locked_capture_bug_and_ends_the_pumps_reads():
    lib, engine, call = attached()
    lib.hangup()
    capture = lib.bugs[lib.by_name(bugmod.CAPTURE_BUG_NAME)]
    assert capture.attached and engine.closed == 1    # passed by: the switch destroys it later
    lib.read_frame(b"\x01" * FRAME)
    call.pull_capture()
    assert engine.captured == []            # after the close nothing reads it
    call.detach()
    assert not capture.attached             # detach unlocked it, and the removal took it


def test_detach_removes_both_bugs_though_the_capture_bug_is_locked():
    lib, engine, call = attached()
    call.detach()
    assert all(not b.attached for b in lib.bugs.values())
    assert lib.removals_refused == 0 and engine.closed == 1
    lib.bugs[1001].buffer += b"\x01" * FRAME
    call.pull_capture()
    assert engine.captured == []


def test_the_capture_bug_is_locked_and_the_playout_bug_is_not():
    lib, engine, call = attached()
    assert lib.bugs[lib.by_name(bugmod.CAPTURE_BUG_NAME)].flags & native.SMBF_LOCK
    assert not playout_bug(lib).flags & native.SMBF_LOCK


def test_the_uplink_leaves_out_audio_captured_before_it_opened():
    options = {"uplink_max_ms": 1000, "uplink_max_latency_ms": 500, "send_timeout": 5.0, "ping_interval": 0}
    sender = UplinkSender(8000, 160, options, lambda now: None, lambda exc: None)
    earlier = time.monotonic()
    sender.start_audio(PCM24)
    sender.capture(b"\x01" * FRAME, earlier)          # waited in the switch from before the open
    sender.capture(b"\x02" * FRAME, time.monotonic())
    sender.capture(b"\x03" * FRAME)
    audio = [payload for stamp, payload in sender.queue if stamp is not None]
    assert audio == [b"\x02" * FRAME, b"\x03" * FRAME] and sender.frames_in == 2
