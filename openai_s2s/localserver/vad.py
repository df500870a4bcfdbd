"""Speech detection by energy, the way the server's ``server_vad`` turn detection works here.

Input audio is cut into 20 ms windows; a window whose RMS is above the threshold is speech.
A turn starts at the first loud window and ends after ``silence_duration_ms`` of quiet ones.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Union

import numpy as np

from .audio import resample
from .session import new_id

WINDOW_MS = 20


class SpeechStarted(NamedTuple):
    item_id: str
    audio_start_ms: int


class SpeechStopped(NamedTuple):
    item_id: str
    audio_end_ms: int
    turn: np.ndarray        # the turn's samples, at 24 kHz


class EnergyVad:
    def __init__(self) -> None:
        self.audio_ms = 0                      # ms of input audio seen so far
        self.pending = np.zeros(0, np.int16)   # samples short of a whole window
        self.speech_item: Optional[str] = None
        self.speech: List[np.ndarray] = []
        self.silent_ms = 0

    def reset_turn(self) -> None:
        """Forget a turn in progress (input_audio_buffer.clear)."""
        self.speech_item = None

    def feed(self, samples: np.ndarray, rate: int, threshold: float,
             silence_ms: Optional[int]) -> List[Union[SpeechStarted, SpeechStopped]]:
        """Take more input at ``rate``; say where turns started and stopped.

        ``silence_ms`` None means turn detection is off: the audio is counted, not judged.
        """
        if len(self.pending):
            samples = np.concatenate([self.pending, samples])
        window = rate * WINDOW_MS // 1000
        count = len(samples) // window
        whole = count * window
        self.pending = samples[whole:]
        self.audio_ms += count * WINDOW_MS
        if silence_ms is None or not count:
            return []
        # Every window's energy in one product (the server's CPU at 100 calls was a quarter
        # in np.mean, one call a window): RMS > threshold, squared, without the root.
        windows = samples[:whole].reshape(count, window).astype(np.float64)
        energy = np.einsum("ij,ij->i", windows, windows)
        limit = threshold * threshold * window
        found: List[Union[SpeechStarted, SpeechStopped]] = []
        for index in range(count):
            event = self._window(samples[index * window:(index + 1) * window], bool(energy[index] > limit),
                                 (count - index - 1) * WINDOW_MS, rate, silence_ms)
            if event is not None:
                found.append(event)
        return found

    def _window(self, window: np.ndarray, loud: bool, later_ms: int, rate: int,
                silence_ms: int) -> Union[SpeechStarted, SpeechStopped, None]:
        """One window; ``later_ms`` of this feed's audio come after it (audio_ms counts them already)."""
        end_ms = self.audio_ms - later_ms
        if self.speech_item is None:
            if loud:
                self.speech_item = new_id("item")
                self.speech, self.silent_ms = [window], 0
                return SpeechStarted(self.speech_item, max(0, end_ms - WINDOW_MS))
            return None
        self.speech.append(window)
        self.silent_ms = 0 if loud else self.silent_ms + WINDOW_MS
        if self.silent_ms < silence_ms:
            return None
        item_id, self.speech_item = self.speech_item, None
        return SpeechStopped(item_id, end_ms, resample(np.concatenate(self.speech), rate, 24000))
