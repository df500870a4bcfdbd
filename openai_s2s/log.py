"""Logging that goes to the switch's log when there is one, with secrets scrubbed.

Every message passes through :func:`redact`, so an API key registered with
:func:`add_secret` cannot reach a log line even if a caller formats it in by
mistake. Without a switch, messages go to the standard ``logging`` module.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

DEBUG, INFO, NOTICE, WARNING, ERR = "DEBUG", "INFO", "NOTICE", "WARNING", "ERR"
_PY_LEVELS = {DEBUG: logging.DEBUG, INFO: logging.INFO, NOTICE: logging.INFO,
              WARNING: logging.WARNING, ERR: logging.ERROR}

_secrets: "set[str]" = set()
_secrets_lock = threading.Lock()
_sink: Optional[Callable[[str, str], None]] = None
_pylog = logging.getLogger("openai_s2s")


def add_secret(secret: Optional[str]) -> None:
    """Remember a value that must never be written anywhere."""
    if secret and len(secret) >= 4:
        with _secrets_lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def set_sink(sink: Optional[Callable[[str, str], None]]) -> None:
    """Route log lines to ``sink(level, message)`` (the switch's console log)."""
    global _sink
    _sink = sink


def log(level: str, message: str) -> None:
    message = redact(message)
    sink = _sink
    if sink is not None:
        try:
            sink(level, message)
            return
        except Exception:  # a broken sink must not break the caller
            pass
    _pylog.log(_PY_LEVELS.get(level, logging.INFO), message)
