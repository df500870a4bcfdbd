"""One session's conversation as the server transcribed it, both sides, in arrival order.

Bounded (the newest ``MAX_ENTRIES`` entries and about ``MAX_BYTES`` of text); read by the
``transcript`` command and, with ``transcript-dir``, written as JSON lines when the session ends.
"""
from __future__ import annotations

import collections
import os
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional

import orjson

from ..log import INFO, WARNING, log

MAX_ENTRIES = 500
MAX_BYTES = 1 << 20
_OVERHEAD = 96          # bytes an entry costs besides its text, roughly as JSON
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Transcript:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: Deque[Dict[str, Any]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.dropped = 0

    def add(self, role: str, item_id: str, text: str, at: Optional[float] = None) -> None:
        entry = {"role": role, "text": text, "at": round(time.time() if at is None else at, 3),
                 "item_id": item_id}
        size = _size(entry)
        with self._lock:
            self._entries.append(entry)
            self._bytes += size
            while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                self._bytes -= _size(self._entries.popleft())
                self.dropped += 1

    def entries(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def write(self, directory: str, uuid: str, started: float) -> Optional[str]:
        """Write the entries as JSON lines to ``<directory>/<uuid>-<unix start>.jsonl``; the path,
        or None when there is nothing to write or it failed (logged, never raised)."""
        entries = self.entries()
        if not entries:
            return None
        path = os.path.join(directory, f"{_UNSAFE.sub('_', uuid)}-{int(started)}.jsonl")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(b"".join(orjson.dumps(e) + b"\n" for e in entries))
        except Exception as exc:
            log(WARNING, f"[{uuid}] transcript not written to {path}: {exc}")
            return None
        log(INFO, f"[{uuid}] transcript written to {path} ({len(entries)} entries)")
        return path


def _size(entry: Dict[str, Any]) -> int:
    return len(entry["text"].encode("utf-8", "surrogatepass")) + len(entry["item_id"]) + _OVERHEAD
