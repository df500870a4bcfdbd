"""Helpers shared by the hostile-server and fuzzing tests (test_hostile_*.py, test_fuzz_commands.py)."""
from __future__ import annotations

import base64
import threading
from typing import Callable, Dict, Optional

import numpy as np
import orjson
import pytest

from openai_s2s.call import registry
from engine_harness import Harness, wait_until
from hostile import Conn

SESSION_CREATED = b'{"type":"session.created","session":{"type":"realtime"}}'
SESSION_UPDATED = b'{"type":"session.updated","session":{"type":"realtime"}}'


@pytest.fixture
def h(local_harness):
    return local_harness


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class RssWatch:
    """Peak RSS of this process while a block runs (sampled every 20 ms)."""

    def __init__(self):
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-watch")

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(1)

    @property
    def growth(self) -> float:
        return self.peak - self.start


def events_for(h: Harness, uuid: str, start: int = 0):
    return [(name, hd, body) for name, hd, body in h.switch.events[start:] if hd.get("Unique-ID") == uuid]


def named_for(h: Harness, uuid: str, subclass: str, start: int = 0):
    return [orjson.loads(body) if body else None for name, hd, body in events_for(h, uuid, start)
            if name == subclass]


def wait_named(h: Harness, uuid: str, subclass: str, timeout: float = 10.0, start: int = 0):
    found = h.switch.wait_event(subclass, lambda hd, b: hd.get("Unique-ID") == uuid, timeout, start=start)
    return orjson.loads(found[1]) if found is not None else None


def disconnect_reason(h: Harness, uuid: str, timeout: float = 10.0) -> Optional[str]:
    body = wait_named(h, uuid, "openai_s2s::disconnect", timeout)
    return None if body is None else body["reason"]


def status(h: Harness, uuid: str) -> Dict:
    reply = h.api(f"{uuid} status")
    assert reply.startswith("+OK "), reply
    return orjson.loads(reply[4:])


def tone_b64(seconds: float = 0.2, freq: float = 440.0, rate: int = 24000) -> str:
    t = np.arange(int(rate * seconds)) / rate
    return base64.b64encode((8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()).decode()


def audio_response(conn: Conn, response_id: str = "resp_1", item_id: str = "item_1", deltas: int = 10,
                   seconds: float = 0.1, done: bool = True, audio_done: bool = True,
                   response_id_on_deltas: bool = True) -> None:
    """A response with audio, as the GA server streams one."""
    conn.send_frame(orjson.dumps({"type": "response.created", "response": {"id": response_id}}))
    chunk = tone_b64(seconds)
    for _ in range(deltas):
        delta = {"type": "response.output_audio.delta", "item_id": item_id, "content_index": 0,
                 "output_index": 0, "delta": chunk}
        if response_id_on_deltas:
            delta["response_id"] = response_id
        conn.send_frame(orjson.dumps(delta))
    if audio_done:
        conn.send_frame(orjson.dumps({"type": "response.output_audio.done", "item_id": item_id,
                                      "content_index": 0, "response_id": response_id}))
    if done:
        conn.send_frame(orjson.dumps({"type": "response.done",
                                      "response": {"id": response_id, "status": "completed"}}))


def hold(release: threading.Event, seconds: float = 20.0) -> None:
    release.wait(seconds)


def heard_energy(call) -> int:
    x = np.frombuffer(bytes(call.heard), "<i2")
    return int(np.abs(x).max()) if len(x) else 0


def ws_then(after: Callable[[Conn], None], release: Optional[threading.Event] = None,
            answer_close: bool = True) -> Callable[[Conn], None]:
    """Accept the upgrade, send session.created, then ``after(conn)``; then wait for the close."""
    def behave(conn: Conn) -> None:
        conn.accept_websocket()
        conn.send_frame(SESSION_CREATED)
        after(conn)
        if release is not None:
            release.wait(20)
        if answer_close:
            conn.answer_close()
    return behave


def no_session_left(uuid: str) -> bool:
    return wait_until(lambda: registry.get(uuid) is None, 5)


def finish_lenient(h: Harness) -> None:
    """Harness.finish() without validating what the local server got (a fuzzer sends events
    of made-up types on purpose): no session, no s2s- thread, no media, no key anywhere."""
    h.finish(validate=False)
