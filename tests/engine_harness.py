"""Shared fixtures for end-to-end tests of the engine: fake switch + real local Realtime server."""
from __future__ import annotations

import base64
import threading
import time
from typing import Callable, List, Optional

import numpy as np
import orjson

from openai_s2s import log
from openai_s2s.call import registry
from openai_s2s.control import commands
from openai_s2s.localserver import LocalRealtimeServer
from fakeswitch import FakeCall, FakeSwitch
from realtime_models import validate_client_event, validate_server_event

KEY = "sk-test-0123456789abcdef-SECRET"
GA_PATH = "v1/realtime?model=gpt-realtime-2.1"
SEED_SESSION_UPDATE = {
    "type": "session.update",
    "session": {"input_audio_transcription": {"model": "whisper-1"},
                "turn_detection": {"type": "server_vad", "threshold": 0.8,
                                   "prefix_padding_ms": 300, "silence_duration_ms": 300}},
}


def tone(freq: float, rate: int, seconds: float, amp: int = 8000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(rate: int, seconds: float) -> bytes:
    return bytes(int(rate * seconds) * 2)


def dominant_freq(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def loud(pcm: bytes, threshold: int = 1000) -> bytes:
    """The stretch of a recording from its first to its last sample above a threshold."""
    x = np.frombuffer(pcm, "<i2")
    idx = np.nonzero(np.abs(x) > threshold)[0]
    return x[idx[0]:idx[-1] + 1].tobytes() if len(idx) else b""


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Harness:
    """One fake switch, one local server, captured logs; checks the invariants at the end."""

    def __init__(self, server: LocalRealtimeServer, config_xml: Optional[str] = None):
        self.server = server
        self.switch = FakeSwitch(config_xml)
        self.logs: List[str] = []
        self.replies: List[str] = []
        log.set_sink(lambda level, message: self.logs.append(f"{level} {message}"))

    def call(self, uuid: str, rate: int = 8000, speed: float = 1.0, **variables: str) -> FakeCall:
        return self.switch.add_call(FakeCall(uuid, rate=rate, variables=variables, speed=speed))

    def api(self, line) -> str:
        reply = commands.execute(line, self.switch)
        self.replies.append(reply)
        return reply

    def create(self, uuid: str, path: str = GA_PATH, auth: str = "bearer", key: Optional[str] = KEY,
               host: Optional[str] = None) -> str:
        host = host or self.server.url
        return self.api(f"{uuid} session.create {host} {path} {auth}" + (f" {key}" if key else ""))

    def connected(self, uuid: str, timeout: float = 10.0):
        return self.switch.wait_event("openai_s2s::connect", lambda h, b: h.get("Unique-ID") == uuid, timeout)

    def send(self, uuid: str, event: dict) -> str:
        return self.api(f"{uuid} client.event {orjson.dumps(event).decode()}")

    def server_events(self, uuid: str, kind: Optional[str] = None) -> List[dict]:
        out = []
        for headers, body in self.switch.named("openai_s2s::server_event"):
            if headers.get("Unique-ID") == uuid:
                event = orjson.loads(body)
                if kind is None or event.get("type") == kind:
                    out.append(event)
        return out

    def wait_server_event(self, uuid: str, kind: str, timeout: float = 10.0, after: int = 0):
        return self.switch.wait_event(
            "openai_s2s::server_event",
            lambda h, b: h.get("Unique-ID") == uuid and orjson.loads(b).get("type") == kind,
            timeout, start=after)

    def received(self, connection_index: int = -1) -> List[dict]:
        return list(self.server.connections[connection_index].received)

    def uplink_audio(self, connection_index: int = -1) -> bytes:
        return b"".join(base64.b64decode(e["audio"]) for e in self.received(connection_index)
                        if e.get("type") == "input_audio_buffer.append")

    def finish(self, validate: bool = True) -> None:
        """Close what is left, then check the invariants every test must keep; ``validate``
        also checks every event the local server got and sent against the openai models (a
        fuzzer that sends events of made-up types on purpose turns it off)."""
        for session in registry.all_sessions():
            session.close("test teardown")
        log.set_sink(None)
        assert registry.all_sessions() == []
        assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("s2s-")], 5), \
            [t.name for t in threading.enumerate() if t.name.startswith("s2s-")]
        for call in self.switch.calls.values():
            assert not call.media_running, f"media still attached on {call.uuid}"
            assert call.callback_errors == [], call.callback_errors
        for conn in self.server.connections if validate else ():
            for event in conn.received:
                validate_client_event(event, conn.generation)
            for event in conn.sent:
                validate_server_event(event, conn.generation)
        self.assert_key_absent()

    def assert_key_absent(self) -> None:
        haystacks = list(self.logs) + list(self.replies)
        for name, headers, body in self.switch.events:
            haystacks.append(repr(headers))
            haystacks.append(body.decode("utf-8", "replace"))
        haystacks.extend(orjson.dumps(s.status()).decode() for s in registry.all_sessions())
        leaked = [h for h in haystacks if KEY in h]
        assert not leaked, leaked[:3]
