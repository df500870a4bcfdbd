"""The playout buffer: model audio at the channel's rate, handed to the media thread a frame at a time.

One producer (the websocket thread) and one consumer (the media thread). They
meet in a ``collections.deque`` whose ``append`` and ``popleft`` are atomic
under the GIL, so the media thread never waits on a lock: a frame out is one
``popleft`` and a few attribute stores. Everything the consumer records is a
plain attribute the other threads only read.
"""
from __future__ import annotations

import collections
import time
from typing import Callable, Deque, NamedTuple, Optional, Tuple

from .meters import LatencyHistogram


class Frame(NamedTuple):
    pcm: bytes
    item: Tuple[str, int]   # (item_id, content_index) the audio belongs to
    end_sample: int         # samples of that item played once this frame is out
    received: float         # monotonic time its delta arrived, 0.0 if not the first frame of a delta
    idle_start: bool = False  # its delta arrived to an empty buffer: measures latency without queueing


class Flushed(NamedTuple):
    had_audio: bool                    # something was playing or queued
    item: Optional[Tuple[str, int]]    # the item being heard when the flush came
    heard_ms: int                      # how much of that item the caller heard
    dropped_frames: int


class PlayoutBuffer:
    def __init__(self, rate: int, frame_samples: int, max_ms: int):
        self.rate = rate
        self.frame_samples = frame_samples
        self.frame_bytes = frame_samples * 2
        self.frame_seconds = frame_samples / rate
        self.max_frames = max(1, max_ms * rate // (1000 * frame_samples))
        self._frames: Deque[Frame] = collections.deque()
        # producer-owned
        self._partial = bytearray()
        self._partial_item: Optional[Tuple[str, int]] = None
        self._partial_received = 0.0
        self._partial_idle_start = False
        self._item_samples = 0
        self.streaming = False       # an item's audio is still arriving
        self.overruns = 0
        # consumer-owned (media thread)
        self.last: Optional[Frame] = None
        self.frames_out = 0
        self.underruns = 0
        # of those, the ones where the server's next bytes were already on this machine: the
        # receiver was behind, so the underrun is the module's, not the server's or the network's
        self.underruns_receiver_behind = 0
        self.waiting_on_server: Optional[Callable[[], bool]] = None   # set once connected
        self.paused = False
        self.muted = False
        # Set for a server that mixes in real time and never says a turn's audio has ended
        # (GPT-Live): a gap of more than this many frames is the model being quiet, not an
        # underrun; shorter gaps count as underruns once the audio resumes.
        self.quiet_after_frames: Optional[int] = None
        self._empty_run = 0          # frames asked for and not there, in a row (consumer)
        self._empty_behind = 0       # of those, the receiver's fault
        self.flushed_item: Optional[Tuple[str, int]] = None
        self.frames_after_flush = 0
        self.latencies: Deque[float] = collections.deque(maxlen=512)
        self.latency_histogram = LatencyHistogram()   # every delta's, for the metrics
        # delta received -> first sample out, for deltas that found the caller hearing nothing of
        # the model: nothing queued, and the last frame out already played (the server streams
        # faster than real time, so later deltas wait behind earlier audio, and a delta that
        # comes while the last frame still plays waits for it to end)
        self.idle_latencies: Deque[float] = collections.deque(maxlen=512)
        self._last_out = float("-inf")

    # -- producer side ------------------------------------------------------
    def push(self, item: Tuple[str, int], pcm: bytes, received: float) -> bool:
        """Queue channel-rate PCM of ``item``; False if the buffer is full and it was dropped."""
        if item != self._partial_item:
            self.end_item()
            self._partial_item, self._item_samples = item, 0
        if len(self._frames) >= self.max_frames:
            self.overruns += 1
            return False
        self.streaming = True
        if not self._partial_received:
            # the next frame out holds this delta's first sample (after any partial before it)
            self._partial_received = received
            self._partial_idle_start = not self._frames and not self._partial
        self._partial += pcm
        while len(self._partial) >= self.frame_bytes:
            self._emit(bytes(self._partial[:self.frame_bytes]))
            del self._partial[:self.frame_bytes]
        return True

    def end_item(self) -> None:
        """The item's audio is complete: pad out its last partial frame."""
        if self._partial and self._partial_item is not None:
            self._emit(bytes(self._partial) + bytes(self.frame_bytes - len(self._partial)))
            self._partial.clear()
        self.streaming = False

    def _emit(self, pcm: bytes) -> None:
        self._item_samples += self.frame_samples
        self._frames.append(Frame(pcm, self._partial_item, self._item_samples, self._partial_received,
                                  self._partial_idle_start))
        self._partial_received = 0.0
        self._partial_idle_start = False

    def flush(self) -> Flushed:
        """Drop everything queued; say which item the caller was hearing and how much of it."""
        try:
            current = self._frames[0].item
        except IndexError:
            current = self._partial_item
        dropped = len(self._frames)
        self._frames.clear()
        self.flushed_item = current
        had_audio = dropped > 0 or bool(self._partial) or self.active
        self._partial.clear()
        self._partial_item = None
        self.streaming = False
        if not had_audio or current is None:
            return Flushed(had_audio, None, 0, dropped)
        last = self.last
        heard = last.end_sample if last is not None and last.item == current else 0
        return Flushed(True, current, heard * 1000 // self.rate, dropped)

    @property
    def queued_frames(self) -> int:
        return len(self._frames)

    @property
    def active(self) -> bool:
        quiet = self.quiet_after_frames
        return bool(self._frames) or self.streaming and (quiet is None or self._empty_run <= quiet)

    # -- consumer side (media thread: no locks, no allocation beyond the pop) --
    def next_frame(self) -> Optional[bytes]:
        """The next frame for the caller, or None to leave the channel's audio alone."""
        if self.paused:
            return None
        try:
            frame = self._frames.popleft()
        except IndexError:
            if self.streaming:
                waiting = self.waiting_on_server
                behind = waiting is not None and not waiting()
                if self.quiet_after_frames is None:
                    self.underruns += 1
                    self.underruns_receiver_behind += behind
                else:
                    self._empty_run += 1
                    self._empty_behind += behind
            return None
        if self._empty_run:
            if self._empty_run <= self.quiet_after_frames:   # a gap inside what the model says
                self.underruns += self._empty_run
                self.underruns_receiver_behind += self._empty_behind
            self._empty_run = self._empty_behind = 0
        self.last = frame
        self.frames_out += 1
        if frame.item == self.flushed_item:
            self.frames_after_flush += 1
        now = time.monotonic()
        if frame.received:
            latency = now - frame.received
            self.latencies.append(latency)
            self.latency_histogram.observe(latency)
            if frame.idle_start and frame.received >= self._last_out + self.frame_seconds:
                self.idle_latencies.append(latency)
        self._last_out = now
        return None if self.muted else frame.pcm
