"""Which state machine speaks for a call: the Realtime API's (GA or beta) or GPT-Live's."""
from __future__ import annotations

from typing import Any, Dict, Union

from .live import LiveProtocol
from .protocol import LIVE, RealtimeProtocol
from .service import DEFAULT_LIVE_DELEGATION_MODEL, DEFAULT_LIVE_MODEL


def make_protocol(generation: str, options: Dict[str, Any]) -> Union[RealtimeProtocol, LiveProtocol]:
    """The state machine for ``generation``, set up from the call's options."""
    if generation == LIVE:
        return LiveProtocol(options.get("barge_in", "auto"), options.get("live_model") or DEFAULT_LIVE_MODEL,
                            options.get("live_delegation_model") or DEFAULT_LIVE_DELEGATION_MODEL)
    return RealtimeProtocol(generation, options.get("hold_response_create", True),
                            options.get("idle_timeout_action", "forward"), options.get("barge_in", "auto"))
