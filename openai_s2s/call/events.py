"""The CUSTOM events the module fires, and their bodies."""
from __future__ import annotations

from typing import Any, Dict, Optional

import orjson

from ..log import ERR, log

CONNECT = "openai_s2s::connect"
CONNECT_FAILED = "openai_s2s::connect_failed"
SERVER_EVENT = "openai_s2s::server_event"
DISCONNECT = "openai_s2s::disconnect"
BUFFER_OVERRUN = "openai_s2s::buffer_overrun"
ALL = (CONNECT, CONNECT_FAILED, SERVER_EVENT, DISCONNECT, BUFFER_OVERRUN)

HEADERS = {"llm-vendor": "openai", "media-bugname": "openai_s2s"}


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def fire(switch: Any, subclass: str, uuid: Optional[str], payload: bytes,
         extra: Optional[Dict[str, str]] = None) -> None:
    """Fire and never raise: a broken event system must not end a call."""
    headers = dict(HEADERS, **extra) if extra else HEADERS
    try:
        switch.fire(subclass, uuid, payload, headers)
    except Exception as exc:
        log(ERR, f"firing {subclass} for {uuid} failed: {exc!r}")
