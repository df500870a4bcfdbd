"""Logging that goes to the switch's log when there is one, with secrets scrubbed.

Every message passes through :func:`redact`, so an API key registered with
:func:`add_secret` cannot reach a log line even if a caller formats it in by
mistake. Without a switch, messages go to the standard ``logging`` module.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Dict, Optional

DEBUG, INFO, NOTICE, WARNING, ERR = "DEBUG", "INFO", "NOTICE", "WARNING", "ERR"
_PY_LEVELS = {DEBUG: logging.DEBUG, INFO: logging.INFO, NOTICE: logging.INFO,
              WARNING: logging.WARNING, ERR: logging.ERROR}

_secrets: Dict[str, int] = {}   # secret -> sessions using it
_secrets_lock = threading.Lock()
_sink: Optional[Callable[[str, str], None]] = None
_pylog = logging.getLogger("openai_s2s")


def add_secret(secret: Optional[str]) -> None:
    """Remember a value that must never be written anywhere, until as many forget_secret()."""
    if secret and len(secret) >= 4:
        with _secrets_lock:
            _secrets[secret] = _secrets.get(secret, 0) + 1


def forget_secret(secret: Optional[str]) -> None:
    """One user of ``secret`` is done with it; the last one's call forgets it, so the set
    stays as large as the keys in use."""
    if secret and len(secret) >= 4:
        with _secrets_lock:
            count = _secrets.get(secret, 0) - 1
            if count > 0:
                _secrets[secret] = count
            else:
                _secrets.pop(secret, None)


def secrets_kept() -> int:
    with _secrets_lock:
        return len(_secrets)


# OpenAI's keys (sk-..., sk-proj-...) and Azure's (32 hex digits), wherever they turn up
_KEYISH = re.compile(r"\b[sS][kK]-[A-Za-z0-9_-]{8,}|\b[0-9a-fA-F]{32}\b")


def looks_like_key(text: str) -> bool:
    return bool(_KEYISH.search(text))


def redact(text: str) -> str:
    """``text`` with every registered secret, and anything shaped like a key, as ***."""
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return _KEYISH.sub("***", text)


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


class Folded:
    """Warnings a peer can repeat at will, folded: the first of a kind goes out at once, then at
    most one a second, carrying the count of those held back since. Kinds are a few fixed keys."""

    def __init__(self, prefix: str, interval: float = 1.0):
        self.prefix = prefix
        self.interval = interval
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = {}

    def __call__(self, level: str, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        log(level, f"{self.prefix}{message}" + (f" (and {held} more like it since)" if held else ""))

    def flush(self) -> None:
        """Say what was held back and not yet told (at the end of a session)."""
        for kind, held in list(self._held.items()):
            if held:
                log(WARNING, f"{self.prefix}{held} more {kind} warnings were folded")
        self._held.clear()
