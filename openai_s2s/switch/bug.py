"""A channel's media through a media bug: :class:`FsCall`, the switch's side of
:class:`openai_s2s.call.host.CallMedia`.

Runs only inside the switch. A call has two media bugs: one that only buffers the caller's
audio (READ_STREAM, no callback: the switch copies into the bug's buffer and calls nothing),
and one whose WRITE_REPLACE callback runs Python on the media thread once per frame: it drains
the first bug's buffer into the uplink and copies the model's audio out. One callback per
frame instead of two: each one has to take the GIL, and at 100 calls taking it (futex waits
and wake-ups behind the other threads) cost more than the work. The callback never blocks
and never lets an exception escape.
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
# Writes that stop for longer than this leave stale caller audio in the capture bug's
# buffer (it holds up to 512 KB): it is flushed rather than sent late.
STALE_CAPTURE = 0.2

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
        self._read_buf = ctypes.create_string_buffer(native.SWITCH_RECOMMENDED_BUFFER_SIZE)
        self._frame = native.SwitchFrame()
        self._frame.data = ctypes.cast(self._read_buf, ctypes.c_void_p)
        self._frame.buflen = native.SWITCH_RECOMMENDED_BUFFER_SIZE
        self._lock = threading.Lock()   # attach/detach only; never taken on the media thread
        self.frame_bytes = frame_samples * 2
        self.frames_read = 0
        self.frames_written = 0
        self.frames_mismatched = 0   # frames of another size than the call's: a codec change mid-call
        self.write_callbacks = 0
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

    def attach(self, capture, playout, closed, mix: bool = True) -> None:
        with self._lock:
            self.mix = mix
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
                    native.SMBF_READ_STREAM | native.SMBF_NO_PAUSE, ctypes.byref(self._capture_bug))
                if status == native.SWITCH_STATUS_SUCCESS:
                    status = self.lib.switch_core_media_bug_add(
                        session, BUG_NAME, self.uuid.encode(), _bug_callback, ctypes.c_void_p(self._id),
                        0, native.SMBF_WRITE_REPLACE | native.SMBF_NO_PAUSE, ctypes.byref(self._bug))
                    if status != native.SWITCH_STATUS_SUCCESS:
                        self.lib.switch_core_media_bug_remove(session, ctypes.byref(self._capture_bug))
                if status != native.SWITCH_STATUS_SUCCESS:
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
                    if self._capture_bug:
                        self.lib.switch_core_media_bug_remove(session, ctypes.byref(self._capture_bug))
                finally:
                    native.release(self.lib, session)
            self._capture_bug = ctypes.c_void_p()
            _bugs.pop(self._id, None)
            self._id = 0

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
                **self.gaps.stats(),
                "callback_ms": round(self.callback_seconds * 1000, 1)}

    # media thread --------------------------------------------------------------
    def _drain_capture(self, stale: bool) -> None:
        # The capture bug lives as long as the callback's bug: the switch removes a call's bugs
        # together under its bug lock, which the write path holds while this runs.
        bug = self._capture_bug
        if not bug:
            return
        if stale:
            self.lib.switch_core_media_bug_flush(bug)
            return
        frame = self._frame
        for _ in range(8):  # bounded; fill=TRUE: only whole frames of real audio
            frame.datalen = 0
            if self.lib.switch_core_media_bug_read(bug, ctypes.byref(frame), native.SWITCH_TRUE) \
                    != native.SWITCH_STATUS_SUCCESS or not frame.datalen:
                return
            if frame.datalen != self.frame_bytes:   # the codec changed mid-call: not our rate
                self.frames_mismatched += 1
                continue
            self.frames_read += 1
            self._capture(ctypes.string_at(frame.data, frame.datalen))

    def _on_write_replace(self, bug) -> None:
        self._drain_capture(stale=self.gaps.frame(time.monotonic()) > STALE_CAPTURE)
        self.write_callbacks += 1
        pcm = self._playout()
        if pcm is None:
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

    def _on_close(self) -> None:
        _bugs.pop(self._id, None)
        self._id = 0
        self._bug = ctypes.c_void_p()
        # The capture bug stays for detach() to remove: at hangup the switch has closed it
        # already (removal then finds nothing), but if only this bug was closed it is still on
        # the channel. No callback reads it once this one has closed.
        closed = self._closed_cb
        if closed is not None:
            closed()
