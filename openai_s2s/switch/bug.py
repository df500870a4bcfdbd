"""A channel's media through a media bug: :class:`FsCall`, the switch's side of
:class:`openai_s2s.call.host.CallMedia`.

Runs only inside the switch. A call has two media bugs, and Python runs on the channel's media
thread only while the model has audio for the caller:

- the capture bug (READ_STREAM, no callback) only buffers the caller's audio: the switch copies
  each frame into the bug's buffer and calls nothing. The uplink pump takes the frames from
  there on each pass (:meth:`FsCall.pull_capture`), on its own thread. The bug is locked
  (SMBF_LOCK), so no one but this module removes it before the session is destroyed, and the
  playout bug's close, which always comes first, ends the pump's reads.
- the playout bug (WRITE_REPLACE) runs its callback on the media thread once per frame the
  channel writes, and copies the model's audio into it. When the model has nothing more to
  say the callback pauses its own bug (SMBF_PAUSE: the switch then calls nothing) and the
  session's next audio resumes it.

At 100 bridged calls every callback, work or not, has to take the GIL on one of 100 media
threads, and taking it (futex waits behind the other threads) cost more than the work
(docs/performance.md). The callback never blocks and never lets an exception escape.
"""
from __future__ import annotations

import ctypes
import itertools
import threading
import time
from typing import Any, Callable, Collection, Dict, Optional, Tuple

import numpy as np

from .. import native

from ..media.meters import GapMeter
from .unicast import UnicastCall, free_udp_port as unicast_free_port

BUG_NAME = b"openai_s2s"
CAPTURE_BUG_NAME = b"openai_s2s_capture"
# host:switch-port:module-port of the unicast connection this module made (see start_unicast)
UNICAST_VAR = "openai_s2s_unicast"
# Frames taken from the capture bug in one pull at most (2 s at 20 ms). The uplink drops, and
# counts, what is older than it sends; more than this waits only before the session's uplink
# first runs (the connect), and that audio is older still: it is flushed.
MAX_PULL = 100

# Live bugs by id: the C side holds only the integer, so a stale pointer can never
# reach a freed Python object. Never reloaded (this module is not the entry module).
_bugs: Dict[int, "FsCall"] = {}
_ids = itertools.count(1)


@native.MEDIA_BUG_CALLBACK
def _bug_callback(bug, user_data, abc_type):  # media thread
    try:
        call = _bugs.get(user_data or 0)
        if call is not None:
            start = time.thread_time()     # CPU, not wall: a wait for the GIL is not our cost
            if abc_type == native.SWITCH_ABC_TYPE_WRITE_REPLACE:
                call._on_write_replace(bug)
            elif abc_type == native.SWITCH_ABC_TYPE_CLOSE:
                call._on_close()
            call.callback_seconds += time.thread_time() - start
    except BaseException:  # an exception must never unwind into the switch
        pass
    return native.SWITCH_TRUE


_NO_CALLBACK = native.MEDIA_BUG_CALLBACK()   # a NULL function pointer: the switch calls nothing


def frame_fits(size: int, datalen: int, buflen: int) -> bool:
    """A frame of ``size`` bytes may replace or mix into the channel's frame only when they are
    the same size. After a codec or rate change mid-call (a re-INVITE) the channel's frames are
    another size, and writing ours would leave a partial frame."""
    if datalen:
        return datalen == size
    return not buflen or buflen >= size


class FsCall:
    """One channel, by uuid. Holds no session pointer between calls: it locates each time."""

    def __init__(self, lib: native.Lib, uuid: str, rate: int, frame_samples: int):
        self.lib = lib
        self.uuid = uuid
        self.rate = rate
        self.frame_samples = frame_samples
        self.mix = True
        self._id = 0
        self._bug = ctypes.c_void_p()          # WRITE_REPLACE, with the callback
        self._capture_bug = ctypes.c_void_p()  # READ_STREAM, no callback
        self._capture: Optional[Callable[[bytes], None]] = None
        self._playout: Optional[Callable[[], Optional[bytes]]] = None
        self._closed_cb: Optional[Callable[[], None]] = None
        self._active: Callable[[], bool] = lambda: True
        self._read_buf = ctypes.create_string_buffer(native.SWITCH_RECOMMENDED_BUFFER_SIZE)
        self._frame = native.SwitchFrame()
        self._frame.data = ctypes.cast(self._read_buf, ctypes.c_void_p)
        self._frame.buflen = native.SWITCH_RECOMMENDED_BUFFER_SIZE
        self._lock = threading.Lock()   # attach/detach only; never taken on the media thread
        # The pump's reads of the capture bug and the receiver's resume of the playout bug hold
        # this, and the playout bug's close takes it: after that close neither bug is touched.
        # Never taken by the playout callback itself.
        self._media_lock = threading.Lock()
        self._reading = False          # under _media_lock: both bugs are there
        self._resumes = 0              # audio_ready() calls: the callback's check that it may pause
        self.write_paused = False      # the playout bug is paused (or about to be)
        self.can_pause = True          # False on a switch that calls a paused bug (before 1.10.10)
        self.frame_bytes = frame_samples * 2
        self.frames_read = 0
        self.frames_written = 0
        self.frames_mismatched = 0   # frames of another size than the call's: a codec change mid-call
        self.write_callbacks = 0
        self.pauses = 0               # times the playout bug paused itself
        self.capture_flushes = 0      # pulls that found more than MAX_PULL frames and flushed the rest
        self.gaps = GapMeter()        # between WRITE_REPLACE callbacks
        self.callback_seconds = 0.0     # CPU time in our media callbacks (the module's media cost)

    # host.CallMedia
    def variable(self, name: str) -> Optional[str]:
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return None
        try:
            return self._get(self.lib.switch_core_session_get_channel(session), name)
        finally:
            native.release(self.lib, session)

    def attach(self, capture, playout, closed, mix: bool = True,
               active: Optional[Callable[[], bool]] = None) -> None:
        with self._lock:
            self.mix = mix
            self._active = active or (lambda: True)
            if self._id:
                raise RuntimeError("already attached")
            session = native.locate(self.lib, self.uuid)
            if session is None:
                raise RuntimeError(f"no such channel {self.uuid}")
            try:
                self._capture, self._playout, self._closed_cb = capture, playout, closed
                self._id = next(_ids)
                _bugs[self._id] = self
                status = self.lib.switch_core_media_bug_add(
                    session, CAPTURE_BUG_NAME, self.uuid.encode(), _NO_CALLBACK, None, 0,
                    native.SMBF_READ_STREAM | native.SMBF_NO_PAUSE | native.SMBF_LOCK,
                    ctypes.byref(self._capture_bug))
                if status == native.SWITCH_STATUS_SUCCESS:
                    status = self.lib.switch_core_media_bug_add(
                        session, BUG_NAME, self.uuid.encode(), _bug_callback, ctypes.c_void_p(self._id),
                        0, native.SMBF_WRITE_REPLACE | native.SMBF_NO_PAUSE, ctypes.byref(self._bug))
                    if status != native.SWITCH_STATUS_SUCCESS:
                        self._remove_capture(session)
                if status == native.SWITCH_STATUS_SUCCESS:
                    with self._media_lock:
                        self._reading = True
                else:
                    _bugs.pop(self._id, None)
                    self._id = 0
                    self._bug = ctypes.c_void_p()
                    self._capture_bug = ctypes.c_void_p()
                    raise RuntimeError(f"switch_core_media_bug_add failed (status {status})")
            finally:
                native.release(self.lib, session)

    def detach(self) -> None:
        with self._lock:
            if not self._id and not self._capture_bug:
                return
            session = native.locate(self.lib, self.uuid)
            if session is not None:
                try:
                    # ctypes drops the GIL for this call, so a callback waiting for it can finish
                    # and release the bug lock that the removal waits on. The callback's bug goes
                    # first: once it is gone nothing reads the capture bug. A bug the switch has
                    # already closed is not in its list, and removal only compares pointers.
                    if self._bug:
                        self.lib.switch_core_media_bug_remove(session, ctypes.byref(self._bug))
                    with self._media_lock:
                        self._reading = False
                        if self._capture_bug:
                            self._remove_capture(session)
                finally:
                    native.release(self.lib, session)
            with self._media_lock:
                self._reading = False
                self._capture_bug = ctypes.c_void_p()
            _bugs.pop(self._id, None)
            self._id = 0

    def _remove_capture(self, session: int) -> None:
        # a locked bug is one the switch's removal refuses
        self.lib.switch_core_media_bug_clear_flag(self._capture_bug, native.SMBF_LOCK)
        self.lib.switch_core_media_bug_remove(session, ctypes.byref(self._capture_bug))

    # the uplink pump's thread ------------------------------------------------------
    def pull_capture(self) -> None:
        """Hand the caller's frames the capture bug holds to the uplink; resume the playout bug
        if the model has audio and nothing has resumed it yet. Each frame's capture time is
        estimated from its place: the newest is taken as just arrived, each earlier one a frame
        before it (so a pull that waited shows in the uplink's latency, to within a frame)."""
        with self._media_lock:
            if not self._reading:
                return
            if self.write_paused and self._active():
                self._resume()
            bug, frame, read = self._capture_bug, self._frame, self.lib.switch_core_media_bug_read
            ref = ctypes.byref(frame)
            frames = []
            for _ in range(MAX_PULL):  # fill=TRUE: only whole frames of real audio
                frame.datalen = 0
                if read(bug, ref, native.SWITCH_TRUE) \
                        != native.SWITCH_STATUS_SUCCESS or not frame.datalen:
                    break
                if frame.datalen != self.frame_bytes:   # the codec changed mid-call: not our rate
                    self.frames_mismatched += 1
                    continue
                frames.append(ctypes.string_at(frame.data, frame.datalen))
            else:
                self.capture_flushes += 1   # at least: what the flush drops is not counted
                self.lib.switch_core_media_bug_flush(bug)
        if not frames:
            return
        self.frames_read += len(frames)
        step = self.frame_samples / self.rate
        newest = time.monotonic() - step * (len(frames) - 1)
        for i, pcm in enumerate(frames):
            self._capture(pcm, newest + i * step)

    # the session's receiver -------------------------------------------------------
    def audio_ready(self) -> None:
        """The model's audio was queued with nothing ahead of it: the playout bug runs again."""
        with self._media_lock:
            if self._reading:
                self._resume()

    def _resume(self) -> None:
        # Under _media_lock with the bug there. Counted first: a callback that is pausing the
        # bug meanwhile sees the count move and resumes it itself (_pause).
        self._resumes += 1
        self.write_paused = False
        self.lib.switch_core_media_bug_clear_flag(self._bug, native.SMBF_PAUSE)

    # unicast mode (unicast.py) ---------------------------------------------------------
    def unicast_media(self) -> UnicastCall:
        """This channel's media through the switch's unicast mode instead of a media bug."""
        return UnicastCall(self)

    def start_unicast(self, host: str, our_port: int, avoid: Collection[int] = ()) -> int:
        """Have the parked channel stream its audio to ``host:our_port`` and write what comes
        back; returns the channel's own port, never one of ``avoid`` (ports of calls the media
        loop still serves: a call that just hung up keeps its port there for up to half a
        second). Raises RuntimeError, changing nothing, when the channel cannot do it."""
        session = native.locate(self.lib, self.uuid)
        if session is None:
            raise RuntimeError(f"no such channel {self.uuid}")
        try:
            channel = self.lib.switch_core_session_get_channel(session)
            if not self.lib.switch_channel_test_flag(channel, native.CF_PARK):
                raise RuntimeError("media=unicast needs a parked channel (the park application)")
            silence = self._get(channel, "send_silence_when_idle")
            if silence and silence.strip() not in ("0", ""):
                raise RuntimeError("media=unicast cannot be used with send_silence_when_idle set: "
                                   "park would write its silence over the model")
            mine = f"{host}:{{}}:{our_port}"
            if self.lib.switch_channel_test_flag(channel, native.CF_UNICAST):
                # Park keeps its first connection until the call leaves park: reuse it if ours.
                ports = (self._get(channel, UNICAST_VAR) or "").split(":")
                if len(ports) == 3 and mine.format(ports[1]) == ":".join(ports):
                    return int(ports[1])
                raise RuntimeError("the channel already has a unicast connection that is not this module's")
            for _ in range(8):   # a port found free can be taken before the switch binds it
                port = unicast_free_port(host)
                if port in avoid:
                    continue
                if self.lib.switch_ivr_activate_unicast(session, host.encode(), port, host.encode(), our_port,
                                                        b"udp", None) == native.SWITCH_STATUS_SUCCESS:
                    self.lib.switch_channel_set_variable_var_check(channel, UNICAST_VAR.encode(),
                                                                   mine.format(port).encode(), native.SWITCH_FALSE)
                    return port
            raise RuntimeError("switch_ivr_activate_unicast failed (see the switch's log)")
        finally:
            native.release(self.lib, session)

    def _on_channel(self, act: Callable[[int, int], Any], gone: Any) -> Any:
        """``act(session, channel)`` with the session located (read lock held), else ``gone``."""
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return gone
        try:
            return act(session, self.lib.switch_core_session_get_channel(session))
        finally:
            native.release(self.lib, session)

    def auto_media(self) -> Tuple[str, str]:
        """The media path ``media=auto`` takes here, and why: unicast for a parked channel
        without send_silence_when_idle (nothing of Python then runs on its media thread), else
        the media bug, which works on any channel."""
        def choose(session: int, channel: int) -> Tuple[str, str]:
            if not self.lib.switch_channel_test_flag(channel, native.CF_PARK):
                return "bug", "the channel is not parked (bridged, or running an application)"
            silence = self._get(channel, "send_silence_when_idle")
            if silence and silence.strip() not in ("0", ""):
                return "bug", "the parked channel has send_silence_when_idle set"
            return "unicast", "the channel is parked without send_silence_when_idle"
        return self._on_channel(choose, ("bug", "the channel is gone"))

    def parked(self) -> bool:
        return self._on_channel(lambda s, c: bool(self.lib.switch_channel_test_flag(c, native.CF_PARK)), False)

    def park(self) -> None:
        """Park the channel until :meth:`unpark` or hangup. Only on the channel's own thread (a
        dialplan application's): it blocks there, in C, with the GIL given up."""
        self._on_channel(lambda s, c: self.lib.switch_ivr_park(s, None), None)

    def unpark(self) -> None:
        """End :meth:`park`: the park loop checks the flag on every frame."""
        self._on_channel(lambda s, c: self.lib.switch_channel_clear_flag(c, native.CF_PARK), None)

    def unicast_alive(self) -> bool:
        """False once the channel is gone or has left park (which ends its unicast connection)."""
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return False
        try:
            channel = self.lib.switch_core_session_get_channel(session)
            return bool(self.lib.switch_channel_test_flag(channel, native.CF_UNICAST))
        finally:
            native.release(self.lib, session)

    # call control (host.CallMedia), from a tool's thread ---------------------------------
    _CAUSES = {"NORMAL_CLEARING": native.SWITCH_CAUSE_NORMAL_CLEARING}

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return
        try:
            self.lib.switch_channel_perform_hangup(self.lib.switch_core_session_get_channel(session),
                                                   b"openai_s2s/switch/bug.py", b"hangup", 0,
                                                   self._CAUSES[cause])
        finally:
            native.release(self.lib, session)

    def transfer(self, extension: str, dialplan: Optional[str], context: Optional[str]) -> bool:
        """As uuid_transfer does, from any thread: the channel goes to CS_ROUTING and leaves
        whatever application it runs (park, the agent)."""
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return False
        try:
            return self.lib.switch_ivr_session_transfer(
                session, extension.encode(), dialplan.encode() if dialplan else None,
                context.encode() if context else None) == native.SWITCH_STATUS_SUCCESS
        finally:
            native.release(self.lib, session)

    def send_dtmf(self, digits: str) -> None:
        session = native.locate(self.lib, self.uuid)
        if session is None:
            raise RuntimeError(f"no such channel {self.uuid}")
        try:
            self.lib.switch_core_session_send_dtmf_string(session, digits.encode())
        finally:
            native.release(self.lib, session)

    def take_dtmf(self) -> None:
        """On the channel's own thread, where no application takes its digits (the agent on a
        media bug, between sleeps): take them, which fires the DTMF event switch/dtmf.py hears."""
        session = native.locate(self.lib, self.uuid)
        if session is None:
            return
        try:
            channel = self.lib.switch_core_session_get_channel(session)
            dtmf = native.SwitchDtmf()
            for _ in range(16):
                if not self.lib.switch_channel_has_dtmf(channel):
                    break
                self.lib.switch_channel_dequeue_dtmf(channel, ctypes.byref(dtmf))
        finally:
            native.release(self.lib, session)

    def _get(self, channel: int, name: str) -> Optional[str]:
        value = self.lib.switch_channel_get_variable_dup(channel, name.encode(), native.SWITCH_TRUE, -1)
        return value.decode("utf-8", "replace") if value is not None else None

    def stats(self) -> Dict[str, float]:
        return {"media": "bug", "frames_read": self.frames_read, "frames_written": self.frames_written,
                "write_callbacks": self.write_callbacks, "frames_mismatched": self.frames_mismatched,
                "write_pauses": self.pauses, "write_paused": self.write_paused, "can_pause": self.can_pause,
                "capture_flushes": self.capture_flushes,
                **self.gaps.stats(),
                "callback_ms": round(self.callback_seconds * 1000, 1)}

    # media thread --------------------------------------------------------------
    def _on_write_replace(self, bug) -> None:
        if self.write_paused:   # called with the flag set: this switch does not know SMBF_PAUSE
            self.can_pause = self.write_paused = False
            self.lib.switch_core_media_bug_clear_flag(bug, native.SMBF_PAUSE)
        resumes = self._resumes   # before asking for audio: see the pause below
        self.gaps.frame(time.monotonic())
        self.write_callbacks += 1
        pcm = self._playout()
        if pcm is None:
            if self.can_pause and not self._active():
                self._pause(bug, resumes)
            return
        frame = self.lib.switch_core_media_bug_get_write_replace_frame(bug)
        if not frame:
            return
        out = frame.contents
        if not frame_fits(len(pcm), out.datalen, out.buflen):
            self.frames_mismatched += 1
            return
        size = len(pcm)
        if self.mix and out.datalen:
            mine = np.frombuffer(pcm, dtype="<i2", count=size // 2).astype(np.int32)
            theirs = np.ctypeslib.as_array(ctypes.cast(out.data, ctypes.POINTER(ctypes.c_int16)), (size // 2,))
            np.copyto(theirs, np.clip(mine + theirs, -32768, 32767), casting="unsafe")
        else:
            native.memmove(out.data, pcm, size)
            out.datalen = size
            out.samples = size // 2
        self.frames_written += 1
        self.lib.switch_core_media_bug_set_write_replace_frame(bug, frame)

    def _pause(self, bug, resumes: int) -> None:
        """The model has nothing for the caller: the switch stops calling us until audio_ready(),
        or the pump seeing audio, resumes the bug. A resume counts before it clears the flag, so
        one that ran at any point after this callback began has moved the count and the bug runs
        on; one that runs after the check clears the flag after this sets it."""
        self.write_paused = True
        self.pauses += 1
        self.gaps.pause()   # the time paused is no gap between frames
        self.lib.switch_core_media_bug_set_flag(bug, native.SMBF_PAUSE)
        if self._resumes != resumes:
            self.write_paused = False
            self.lib.switch_core_media_bug_clear_flag(bug, native.SMBF_PAUSE)

    def _on_close(self) -> None:
        # The switch closes this bug at hangup (or someone removed it): from here on nothing
        # reads the capture bug, which the switch may destroy once the session goes. It stays
        # for detach() to remove if the session lives on.
        with self._media_lock:
            self._reading = False
        _bugs.pop(self._id, None)
        self._id = 0
        self._bug = ctypes.c_void_p()
        closed = self._closed_cb
        if closed is not None:
            closed()
