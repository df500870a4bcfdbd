"""The server mixer of a GPT-Live session: what the session says, in order, cut into deltas
and released in real time.

GPT-Live mixes its output on the server and sends it as it plays (the package speaks of the
"server mixer" a fixture drains from), so unlike a Realtime response, which this server
streams as fast as ``speed`` allows, output leaves here at most ``LEAD_MS`` ahead of real
time: the audio sent since output began never exceeds ``speed`` x the time since then, plus
the lead. How far ahead the service runs is inferred (about 200 ms), not measured. The
caller's speech stops the output at once (:meth:`Mixer.stop`): nothing more of it goes out.

Each :class:`Speech` carries its transcript; its words go out with the delta whose audio
reaches each word's share of the speech, so a speech cut short has sent only the words of
the audio sent. Pure bookkeeping on a clock passed in: the connection drives it.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Callable, Deque, List, NamedTuple, Optional

import numpy as np

DELTA_MS = 100
LEAD_MS = 200


@dataclasses.dataclass
class Speech:
    samples: np.ndarray                    # in the session's format's rate, int16
    text: str                              # its output transcript ("" for none: a fixture)
    on_done: Optional[Callable[[], None]] = None   # its last delta has gone out
    offset: int = 0                        # samples sent
    start_ms: int = 0                      # where it began on the session timeline
    words_sent: int = 0

    @property
    def words(self) -> List[str]:
        return self.text.split()


class Word(NamedTuple):
    text: str              # as the transcript delta carries it: a space before all but the first
    start_ms: int
    end_ms: int


class Delta(NamedTuple):
    samples: np.ndarray
    words: List[Word]
    finished: Optional[Speech]             # the speech this delta ended


class Mixer:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.queue: Deque[Speech] = deque()
        self.clock_start: Optional[float] = None   # when the current run of output began
        self.sent_ms = 0.0                         # audio sent since then
        self.timeline_end_ms = 0                   # where the last speech ended on the timeline

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    def say(self, speech: Speech, now: float, speed: float) -> None:
        """Queue ``speech`` after what is playing. A new run of output (nothing left playing
        in real time) starts the pacing clock again, with its lead."""
        if not self.queue and not self._still_playing(now, speed):
            self.clock_start, self.sent_ms = now, 0.0
        self.queue.append(speech)

    def _still_playing(self, now: float, speed: float) -> bool:
        if self.clock_start is None or speed <= 0:
            return False
        return now < self.clock_start + self.sent_ms / 1000 / speed

    def stop(self) -> bool:
        """Drop all output (the caller spoke, the session closes); True when some was left."""
        playing = bool(self.queue)
        if playing:
            head = self.queue[0]
            self.timeline_end_ms = head.start_ms + head.offset * 1000 // self.rate
        self.queue.clear()
        self.clock_start = None
        return playing

    def due_in(self, now: float, speed: float) -> float:
        """Seconds until the next delta may go (0: now). Speed 0 sends at once."""
        if not self.queue or speed <= 0 or self.clock_start is None:
            return 0.0
        head = self.queue[0]
        chunk_ms = min(len(head.samples) - head.offset, self._step()) * 1000 / self.rate
        allowed_at = (self.sent_ms + chunk_ms - LEAD_MS) / 1000 / speed
        return max(0.0, self.clock_start + allowed_at - now)

    def _step(self) -> int:
        return self.rate * DELTA_MS // 1000

    def take(self, timeline_ms: int) -> Delta:
        """The next delta of the speech at the head of the queue (``busy`` must be true)."""
        head = self.queue[0]
        if head.offset == 0:
            head.start_ms = max(timeline_ms, self.timeline_end_ms)
        begin, end = head.offset, min(len(head.samples), head.offset + self._step())
        head.offset = end
        self.sent_ms += (end - begin) * 1000 / self.rate
        words = self._words(head, end)
        finished = None
        if end >= len(head.samples):
            self.queue.popleft()
            self.timeline_end_ms = head.start_ms + len(head.samples) * 1000 // self.rate
            finished = head
        return Delta(head.samples[begin:end], words, finished)

    def _words(self, speech: Speech, sent: int) -> List[Word]:
        """The words whose share of the speech begins before ``sent`` samples."""
        words, total = speech.words, max(1, len(speech.samples))
        out: List[Word] = []
        while speech.words_sent < len(words):
            i = speech.words_sent
            at = i * total // len(words)
            if at >= sent and sent < total:
                break
            until = (i + 1) * total // len(words)
            out.append(Word((" " if i else "") + words[i], speech.start_ms + at * 1000 // self.rate,
                            speech.start_ms + until * 1000 // self.rate))
            speech.words_sent += 1
        return out
