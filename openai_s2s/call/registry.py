"""Live sessions by channel uuid. Never reloaded, so it survives mod_python3's re-imports."""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

_sessions: Dict[str, Any] = {}
_lock = threading.Lock()


def add(uuid: str, session: Any) -> bool:
    """Register; False if the uuid already has a session."""
    with _lock:
        if uuid in _sessions:
            return False
        _sessions[uuid] = session
        return True


def get(uuid: str) -> Optional[Any]:
    with _lock:
        return _sessions.get(uuid)


def find(uuid: str) -> Optional[Any]:
    """``get`` without the lock, for a callback that must never wait (a dict read is atomic)."""
    return _sessions.get(uuid)


def remove(uuid: str, session: Any) -> None:
    with _lock:
        if _sessions.get(uuid) is session:
            del _sessions[uuid]


def all_sessions() -> List[Any]:
    with _lock:
        return list(_sessions.values())
