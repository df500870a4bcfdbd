"""What the GPT-Live tests of the local server share (no tests here): a plain websocket client
that checks every event each way against ``openai.types.live``, audio helpers, and servers
whose recorded events are checked again when they stop."""
from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import orjson
import websocket

from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import KEY, silence, tone
from realtime_models import validate_client_event, validate_server_event

LIVE_PATH = "/v1/live/sessions"
AZURE_LIVE_PATH = "/openai/v1/live/sessions"
MODEL = "gpt-live-1"
OUTPUT_DELTA = "session.output_audio.delta"


def speech(seconds: float, rate: int = 24000) -> bytes:
    """Loud enough for the server's energy VAD."""
    return tone(300, rate, seconds)


class LiveClient:
    """One GPT-Live websocket. ``send`` checks the event against the package's client models
    (``valid=False`` for an event that is wrong on purpose); ``recv`` checks each server event
    and notes when it came."""

    def __init__(self, server: LocalRealtimeServer, path: str = LIVE_PATH,
                 header: Optional[List[str]] = None):
        self.ws = websocket.create_connection(server.url + path, timeout=5,
                                              header=header or [f"Authorization: Bearer {KEY}"])
        self.seen: List[Tuple[float, Dict[str, Any]]] = []

    def send(self, event: Dict[str, Any], valid: bool = True) -> None:
        if valid:
            validate_client_event(event, "live")
        self.ws.send(orjson.dumps(event).decode())

    def recv(self) -> Dict[str, Any]:
        event = orjson.loads(self.ws.recv())
        validate_server_event(event, "live")
        self.seen.append((time.monotonic(), event))
        return event

    def until(self, kind: str) -> Dict[str, Any]:
        while True:
            event = self.recv()
            if event["type"] == kind:
                return event

    def between(self, kind: str) -> List[Dict[str, Any]]:
        """The events up to and with the next of ``kind``."""
        events = [self.recv()]
        while events[-1]["type"] != kind:
            events.append(self.recv())
        return events

    def quiet(self, seconds: float) -> List[Dict[str, Any]]:
        """What comes in the next ``seconds``."""
        self.ws.settimeout(seconds)
        events: List[Dict[str, Any]] = []
        try:
            while True:
                events.append(self.recv())
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(5)
        return events

    def start(self, **session: Any) -> Dict[str, Any]:
        """session.start (the model given unless named), then the session.started resource."""
        self.send({"type": "session.start", "session": {"model": MODEL, **session}})
        return self.until("session.started")["session"]

    def append(self, pcm: bytes, chunk: int = 4800) -> None:
        for i in range(0, len(pcm), chunk):
            self.send({"type": "session.input_audio.append",
                       "audio": base64.b64encode(pcm[i:i + chunk]).decode()})

    def say(self, seconds: float, rate: int = 24000, quiet_after: float = 0.6) -> None:
        """An utterance, and enough quiet after it for the server to hear its end."""
        self.append(speech(seconds, rate) + silence(rate, quiet_after), chunk=rate * 2 // 10)

    def close_code(self) -> int:
        """The status of the server's close frame, which must come next."""
        opcode, frame = self.ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, frame.data[:200])
        return int.from_bytes(frame.data[:2], "big")

    def close(self) -> None:
        self.ws.close()


def errors(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e["error"] for e in events if e["type"] == "error"]


def of(events: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def output_audio(events: List[Dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in of(events, OUTPUT_DELTA))


def transcript(events: List[Dict[str, Any]], kind: str = "session.output_transcript.delta") -> str:
    return "".join(e["delta"] for e in of(events, kind))


def validate_recorded(server: LocalRealtimeServer) -> None:
    """Every event the server sent, against the package's models of its connection's
    protocol (what the clients sent was checked as they sent it: some is wrong on purpose)."""
    for conn in server.connections:
        for event in conn.sent:
            validate_server_event(event, conn.generation)


@contextmanager
def live_server(**options: Any) -> Iterator[LocalRealtimeServer]:
    with LocalRealtimeServer(api_key=KEY, **options) as srv:
        yield srv
        validate_recorded(srv)


def pcm_of(fmt: Dict[str, Any], wire: bytes) -> np.ndarray:
    """Wire audio in a Live session format as 16-bit samples."""
    from openai_s2s.media import g711
    if fmt["type"] == "audio/pcmu":
        wire = g711.ulaw_decode(wire)
    elif fmt["type"] == "audio/pcma":
        wire = g711.alaw_decode(wire)
    return np.frombuffer(wire, "<i2")


def encode_as(fmt: Dict[str, Any], pcm: bytes) -> bytes:
    from openai_s2s.media import g711
    if fmt["type"] == "audio/pcmu":
        return g711.ulaw_encode(pcm)
    if fmt["type"] == "audio/pcma":
        return g711.alaw_encode(pcm)
    return pcm
