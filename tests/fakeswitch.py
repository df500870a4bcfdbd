"""A test double of the FreeSWITCH side of openai_s2s (the ``host`` protocols).

What it fakes, honestly:
- the media bug: a Python thread plays the part of the channel's media thread,
  calling ``capture`` with one frame of caller audio and ``playout`` once per
  frame, paced by a clock (``speed`` times real time);
- channel variables (a dict) and the channel headers on events (only
  ``Unique-ID`` and ``Channel-Name``, where the real switch adds dozens);
- hangup (``hangup()`` calls the close callback from the media thread, as
  SWITCH_ABC_TYPE_CLOSE does), by the caller or the module (``hangup(cause)``, recorded);
- call control: ``transfer`` and ``send_dtmf`` are recorded (a transfer is accepted);
- the caller's digits: ``press("12#")`` hands them over as the switch's DTMF event callback
  does (``call.dtmf.received``), one by one.
What it does not fake: nothing of the engine; codecs, timing jitter and the
real switch's threading are only proven by the real-switch tests.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from openai_s2s.media.meters import GapMeter


class FakeCall:
    def __init__(self, uuid: str, rate: int = 8000, ptime_ms: int = 20,
                 variables: Optional[Dict[str, str]] = None, speed: float = 1.0):
        self.uuid = uuid
        self.rate = rate
        self.frame_samples = rate * ptime_ms // 1000
        self.variables = dict(variables or {})
        self.speed = speed
        self._source: Deque[bytes] = collections.deque()
        self.heard = bytearray()           # what the caller heard, frame by frame
        self.heard_frames: List[Optional[bytes]] = []
        self.gaps = GapMeter()             # between frames, as the real media paths keep it
        self.attached = False
        self.detach_count = 0
        self.frames_ticked = 0
        # Like the real bridge: caller audio is taken on each frame the channel writes, and
        # this counts those frames (fsbridge.FsCall.write_callbacks).
        self.write_callbacks = 0
        self._writing = True
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._hangup = threading.Event()
        self.callback_errors: List[BaseException] = []
        self.hangup_causes: List[str] = []
        self.transfers: List[Tuple[str, Optional[str], Optional[str]]] = []
        self.dtmf_sent: List[str] = []
        self.refuse_transfer = False

    # host.CallMedia
    def variable(self, name: str) -> Optional[str]:
        return self.variables.get(name)

    def attach(self, capture: Callable[[bytes], None], playout: Callable[[], Optional[bytes]],
               closed: Callable[[], None], mix: bool = True,
               active: Optional[Callable[[], bool]] = None) -> None:
        # The fake channel writes silence, so mixing and replacing sound the same here.
        if self.attached:
            raise RuntimeError("media bug already attached")
        self.attached = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._media, args=(capture, playout, closed),
                                        daemon=True, name=f"fake-media-{self.uuid[:6]}")
        self._thread.start()

    def detach(self) -> None:
        self.detach_count += 1
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self.attached = False

    # test controls
    def say(self, pcm: bytes) -> None:
        """Queue caller audio; silence is sent when nothing is queued."""
        size = self.frame_samples * 2
        for i in range(0, len(pcm), size):
            self._source.append(pcm[i:i + size].ljust(size, b"\0"))

    def hangup(self, cause: Optional[str] = None) -> None:
        """The caller hangs up, or (with a cause) the module hangs the channel up."""
        if cause is not None:
            self.hangup_causes.append(cause)
        self._hangup.set()

    def transfer(self, extension: str, dialplan: Optional[str], context: Optional[str]) -> bool:
        self.transfers.append((extension, dialplan, context))
        return not self.refuse_transfer

    def send_dtmf(self, digits: str) -> None:
        self.dtmf_sent.append(digits)

    def press(self, digits: str) -> None:
        from openai_s2s.call import dtmf
        for digit in digits:
            dtmf.received(self.uuid, digit)

    def stop_writing(self) -> None:
        """The channel writes nothing (a parked call without send_silence_when_idle): nothing is
        played, and this double then takes no caller audio either."""
        self._writing = False

    @property
    def media_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _media(self, capture, playout, closed) -> None:
        period = self.frame_samples / self.rate / self.speed
        silence = bytes(self.frame_samples * 2)
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._hangup.is_set():
                try:
                    closed()
                except BaseException as exc:  # a real media thread would crash the switch
                    self.callback_errors.append(exc)
                self.attached = False
                return
            if not self._writing:
                time.sleep(period)
                continue
            self.write_callbacks += 1
            self.gaps.frame(time.monotonic())
            try:
                capture(self._source.popleft() if self._source else silence)
                frame = playout()
            except BaseException as exc:
                self.callback_errors.append(exc)
                frame = None
            if frame is not None and len(frame) != len(silence):
                self.callback_errors.append(AssertionError(f"frame of {len(frame)} bytes"))
            self.heard_frames.append(frame)
            self.heard += frame if frame is not None else silence
            self.frames_ticked += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


class FakeSwitch:
    def __init__(self, config_xml: Optional[str] = None):
        self.calls: Dict[str, FakeCall] = {}
        self.events: List[Tuple[str, Dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        self.config = config_xml

    def add_call(self, call: FakeCall) -> FakeCall:
        self.calls[call.uuid] = call
        return call

    # host.Switch
    def find_call(self, uuid: str) -> Optional[FakeCall]:
        return self.calls.get(uuid)

    def fire(self, subclass: str, uuid: Optional[str], body: bytes, headers: Dict[str, str]) -> None:
        all_headers = {"Event-Name": "CUSTOM", "Event-Subclass": subclass, **headers}
        if uuid in self.calls:
            all_headers.update({"Unique-ID": uuid, "Channel-Name": f"loopback/{uuid[:8]}"})
        with self._cond:
            self.events.append((subclass, all_headers, bytes(body)))
            self._cond.notify_all()

    def config_xml(self) -> Optional[str]:
        return self.config

    # test helpers
    def wait_event(self, subclass: str, predicate: Callable[[Dict[str, str], bytes], bool] = lambda h, b: True,
                   timeout: float = 10.0, start: int = 0) -> Optional[Tuple[Dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, headers, body in self.events[start:]:
                    if name == subclass and predicate(headers, body):
                        return headers, body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def named(self, subclass: str) -> List[Tuple[Dict[str, str], bytes]]:
        with self._cond:
            return [(h, b) for n, h, b in self.events if n == subclass]
