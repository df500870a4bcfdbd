"""The ways the server can be told to misbehave, for fault tests (``--fault``, ``set_fault``).

==================  ===============================================================
``refuse:CODE``     answer the upgrade request with HTTP CODE
``slow_handshake:S`` wait S seconds before answering the upgrade request
``stall``           send ``session.created``, then read nothing (pings go unanswered,
                    the client's sends back up until its socket is full)
``garbage``         after ``session.created``, a text frame that is not JSON
``binary``          after ``session.created``, a binary frame
``expire_after:S``  after S seconds, the ``session_expired`` error, then close 1000
``close_after:N``   after the Nth server event, close 1011 "injected fault"
==================  ===============================================================

A GPT-Live connection sends nothing before ``session.started``, so there "after
session.created" is after ``session.started``, and ``expire_after`` counts from it and ends
with ``session.closed`` (reason ``expired``) before the close.

A connection takes the server's fault as it is when its upgrade request comes in. A fault
string that names none of these does nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Fault:
    refuse: Optional[int] = None
    slow_handshake: Optional[float] = None
    stall: bool = False
    garbage: bool = False
    binary: bool = False
    expire_after: Optional[float] = None
    close_after: Optional[int] = None

    @classmethod
    def parse(cls, text: Optional[str]) -> "Fault":
        if not text:
            return cls()
        name, _, arg = text.partition(":")
        if name in ("stall", "garbage", "binary") and not arg:
            return cls(**{name: True})
        convert = {"refuse": int, "close_after": int, "slow_handshake": float, "expire_after": float}.get(name)
        if convert is None or not arg:
            return cls()
        return cls(**{name: convert(arg)})
