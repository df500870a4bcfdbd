"""Digits the caller presses, batched for the model: pure, driven by the session's housekeeping.

A batch ends at ``#`` (which it keeps) or when no digit has come for ``pause`` seconds. The
switch hands digits over from its event thread (``push``: an append, nothing else); the
housekeeping tick takes them (``poll``) and says when a batch is complete.
"""
from __future__ import annotations

import collections
from typing import Deque, List

from . import registry

DIGITS = frozenset("0123456789*#ABCD")
MAX_BATCH = 64          # digits in one batch at most: a longer run is sent in pieces
DEFAULT_TEMPLATE = "The caller pressed {digits}"


def render(template: str, digits: str) -> str:
    """The text for the model: ``{digits}`` replaced by the digits, space-separated."""
    return template.replace("{digits}", " ".join(digits))


class DtmfBatcher:
    def __init__(self, pause: float):
        self.pause = pause
        self._incoming: Deque[str] = collections.deque(maxlen=4 * MAX_BATCH)  # any thread appends
        self._digits: List[str] = []
        self._last = 0.0
        self.received = 0

    def push(self, digit: str) -> None:
        """Any thread (the switch's event thread): one digit. Never blocks, never raises."""
        self._incoming.append(digit)

    def poll(self, now: float) -> List[str]:
        """The batches complete at ``now`` (oldest first), as digit strings like ``"123#"``."""
        done: List[str] = []
        while self._incoming:
            digit = self._incoming.popleft().upper()
            if digit not in DIGITS:
                continue
            self.received += 1
            self._digits.append(digit)
            self._last = now
            if digit == "#" or len(self._digits) >= MAX_BATCH:
                done.append("".join(self._digits))
                self._digits = []
        if self._digits and now - self._last >= self.pause:
            done.append("".join(self._digits))
            self._digits = []
        return done

    @property
    def pending(self) -> str:
        return "".join(self._digits)


def received(uuid: str, digit: str) -> None:
    """A digit the switch took from the channel ``uuid``: to its session, if it has one that
    listens. Any thread, the switch's event thread included: never blocks, never raises."""
    try:
        session = registry.find(uuid)
        if session is not None:
            session.dtmf_digit(digit)
    except Exception:
        pass
