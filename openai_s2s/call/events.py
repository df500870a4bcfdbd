"""The CUSTOM events the module fires, and their bodies."""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional

import orjson

from ..log import ERR, log

CONNECT = "openai_s2s::connect"
CONNECT_FAILED = "openai_s2s::connect_failed"
SERVER_EVENT = "openai_s2s::server_event"
DISCONNECT = "openai_s2s::disconnect"
BUFFER_OVERRUN = "openai_s2s::buffer_overrun"
RECONNECT = "openai_s2s::reconnect"
ALL = (CONNECT, CONNECT_FAILED, SERVER_EVENT, DISCONNECT, BUFFER_OVERRUN, RECONNECT)

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


class Gate:
    """One session's events: exactly one of connect and connect_failed, and none at all once
    the session has ended (after session.delete answers, nothing fires for it)."""

    def __init__(self, switch: Any, uuid: str):
        self.switch = switch
        self.uuid = uuid
        self._lock = threading.Lock()
        self._closed = False
        self.told: Optional[str] = None   # CONNECT or CONNECT_FAILED, whichever fired
        self.failed_body: Optional[bytes] = None   # connect_failed's, when that fired

    def fire(self, subclass: str, payload: bytes) -> None:
        with self._lock:
            if not self._closed:
                fire(self.switch, subclass, self.uuid, payload)

    def tell_connect(self, subclass: str, payload: bytes) -> bool:
        """Fire connect or connect_failed, the first time only; False if one has fired already."""
        with self._lock:
            if self.told is not None or self._closed:
                return False
            self.told = subclass
            if subclass == CONNECT_FAILED:
                self.failed_body = payload
            fire(self.switch, subclass, self.uuid, payload)
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
