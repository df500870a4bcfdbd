"""The service's time limit on a session, and the one warning before it.

The service ends a session a fixed time after it opened (``realtime/service.py``), so an
application that wants the call to go on must open a new session before then. The module
fires ``{"type": "session.expiring", "seconds_left": N}`` as an ``openai_s2s::server_event``,
once, ``expiry_warning`` seconds before the limit. The clock starts when the websocket opens,
a little before the service's own (at ``session.created``): the warning errs early, never late.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from ..realtime.service import session_limit

EVENT = "session.expiring"


class Expiry:
    """Checked on every housekeeping pass, so :meth:`check` is one comparison until it fires."""

    def __init__(self, limit: float, warning: float, configured: bool = False):
        self.limit = limit
        self.configured = configured    # the operator's session_limit, not the service's
        self.warning = warning          # seconds before the limit; 0: no warning
        self.ends_at: Optional[float] = None   # monotonic, once the session has opened
        self._due = math.inf

    @classmethod
    def for_session(cls, url: str, options: Dict[str, Any]) -> "Expiry":
        """The limit configured (``session_limit``), else the one the service at ``url`` keeps."""
        limit = options.get("session_limit")
        return cls(float(limit if limit is not None else session_limit(url)),
                   float(options.get("expiry_warning", 0)), configured=limit is not None)

    def start(self, now: float) -> None:
        """The session opened at ``now`` (monotonic seconds)."""
        self.ends_at = now + self.limit
        if self.warning > 0:
            self._due = self.ends_at - self.warning

    def server_says(self, ends_at: float) -> None:
        """The server named the end (GPT-Live's ``expires_at``, as monotonic seconds): it is the
        truth, unless the operator set ``session_limit`` (then the earlier of the two)."""
        if self.ends_at is not None and self.configured and ends_at > self.ends_at:
            return
        self.ends_at = ends_at
        if self.warning > 0 and self._due != math.inf:
            self._due = ends_at - self.warning

    def check(self, now: float) -> Optional[int]:
        """The whole seconds left, the first time the warning is due; None otherwise."""
        if now < self._due:
            return None
        self._due = math.inf
        return self.seconds_left(now)

    def seconds_left(self, now: float) -> Optional[int]:
        if self.ends_at is None:
            return None
        return max(0, round(self.ends_at - now))
