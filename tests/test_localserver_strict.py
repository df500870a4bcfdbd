"""The local server does what OpenAI's service does where a client can tell: it cancels a
response when the caller starts to speak, refuses a truncate past the audio it sent, sends
the idle timeout, and fills in turn detection's defaults; ``lenient`` keeps the older ways."""
import base64
import os
import subprocess
import sys

import orjson
import pytest
import websocket

import openai_s2s
from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import KEY, silence, tone
from realtime_models import validate_client_event, validate_server_event

GA_HEADERS = [f"Authorization: Bearer {KEY}"]
BETA_HEADERS = [f"Authorization: Bearer {KEY}", "OpenAI-Beta: realtime=v1"]
AUDIO_DELTA = {"ga": "response.output_audio.delta", "beta": "response.audio.delta"}
SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
              "silence_duration_ms": 500, "create_response": True, "interrupt_response": True}
GA_SERVER_VAD = dict(SERVER_VAD, idle_timeout_ms=None)
SEMANTIC_VAD = {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                "interrupt_response": True}


class Client:
    """A plain websocket client that checks every event each way against the openai models."""

    def __init__(self, url: str, generation: str = "ga"):
        self.generation = generation
        headers = BETA_HEADERS if generation == "beta" else GA_HEADERS
        self.ws = websocket.create_connection(url + "/v1/realtime?model=gpt-realtime", timeout=5,
                                              header=headers)
        self.seen = []

    def send(self, event: dict) -> None:
        validate_client_event(event, self.generation)
        self.ws.send(orjson.dumps(event).decode())

    def recv(self) -> dict:
        event = orjson.loads(self.ws.recv())
        validate_server_event(event, self.generation)
        self.seen.append(event)
        return event

    def until(self, kind: str) -> dict:
        while True:
            event = self.recv()
            if event["type"] == kind:
                return event

    def between(self, kind: str) -> list:
        """The events up to and with the next of ``kind``."""
        events = [self.recv()]
        while events[-1]["type"] != kind:
            events.append(self.recv())
        return events

    def quiet(self, seconds: float) -> list:
        """What comes in the next ``seconds``."""
        self.ws.settimeout(seconds)
        events = []
        try:
            while True:
                events.append(self.recv())
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(5)
        return events

    def append(self, pcm: bytes, chunk: int = 4800) -> None:
        for i in range(0, len(pcm), chunk):
            self.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(pcm[i:i + chunk]).decode()})

    def update_turn_detection(self, turn_detection) -> dict:
        if self.generation == "beta":
            self.send({"type": "session.update", "session": {"turn_detection": turn_detection}})
            return self.until("session.updated")["session"]["turn_detection"]
        self.send({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": turn_detection}}}})
        return self.until("session.updated")["session"]["audio"]["input"]["turn_detection"]

    def close(self) -> None:
        self.ws.close()


def speech(seconds: float = 0.3) -> bytes:
    """Loud enough at 24 kHz for the server's energy VAD; no quiet after it, so the turn stays open."""
    return tone(300, 24000, seconds)


def validate_recorded(server: LocalRealtimeServer) -> None:
    for conn in server.connections:
        for event in conn.received:
            validate_client_event(event, conn.generation)
        for event in conn.sent:
            validate_server_event(event, conn.generation)


@pytest.fixture
def slow_server():
    """Replies stream at half real time: a 1 s tone takes 2 s, time enough to speak over it."""
    with LocalRealtimeServer(api_key=KEY, speed=0.5, reply="tone") as srv:
        yield srv
        validate_recorded(srv)


@pytest.fixture
def fast_server():
    with LocalRealtimeServer(api_key=KEY, speed=0, reply="tone") as srv:
        yield srv
        validate_recorded(srv)


def speak_over_a_reply(client: Client) -> tuple:
    """Start a reply, speak once its audio flows; (response id, the events from the speech on)."""
    client.send({"type": "response.create"})
    response_id = client.until("response.created")["response"]["id"]
    client.until(AUDIO_DELTA[client.generation])
    client.append(speech())
    client.until("input_audio_buffer.speech_started")
    return response_id, client.between("response.done")


# -- the caller's speech cancels the response ------------------------------------------------
@pytest.mark.parametrize("generation,turn_detection", [
    ("ga", None), ("ga", {"type": "semantic_vad"}), ("beta", None)])
def test_speech_cancels_the_response_in_progress(slow_server, generation, turn_detection):
    client = Client(slow_server.url, generation)
    client.until("session.created")
    if turn_detection is not None:
        client.update_turn_detection(turn_detection)
    response_id, events = speak_over_a_reply(client)
    done = events[-1]["response"]
    assert done["id"] == response_id
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    assert [e["type"] for e in events] == ["response.output_item.done", "response.done"]
    # nothing more of it: at half real time another delta would be due every 200 ms
    later = client.quiet(0.6)
    assert not [e for e in later if e.get("response_id") == response_id], later
    client.close()


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_a_cancel_after_the_servers_own_is_refused_with_its_event_id(slow_server, generation):
    """What a client's barge-in cancel meets once the service has cancelled by itself."""
    client = Client(slow_server.url, generation)
    client.until("session.created")
    _, events = speak_over_a_reply(client)
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
    client.send({"type": "response.cancel", "event_id": "evt_late_cancel"})
    error = client.until("error")["error"]
    assert error == {"type": "invalid_request_error", "code": "response_cancel_not_active",
                     "message": "Cancellation failed: no active response found",
                     "event_id": "evt_late_cancel"}
    client.close()


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_interrupt_response_false_lets_the_response_finish(slow_server, generation):
    client = Client(slow_server.url, generation)
    client.until("session.created")
    expected = dict(GA_SERVER_VAD if generation == "ga" else SERVER_VAD, interrupt_response=False)
    assert client.update_turn_detection({"type": "server_vad", "interrupt_response": False}) == expected
    _, events = speak_over_a_reply(client)
    assert events[-1]["response"]["status"] == "completed"
    assert "status_details" not in events[-1]["response"]
    client.close()


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_a_client_cancel_says_client_cancelled(slow_server, generation):
    client = Client(slow_server.url, generation)
    client.until("session.created")
    client.send({"type": "response.create"})
    client.until(AUDIO_DELTA[generation])
    client.send({"type": "response.cancel"})
    done = client.until("response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    client.close()


# -- conversation.item.truncate --------------------------------------------------------------
@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_truncate_past_the_audio_sent_is_refused_in_the_services_words(fast_server, generation):
    client = Client(fast_server.url, generation)
    client.until("session.created")
    client.send({"type": "response.create"})
    item_id = client.until(AUDIO_DELTA[generation])["item_id"]
    client.until("response.done")          # the whole 1 s tone
    client.send({"type": "conversation.item.truncate", "event_id": "evt_t1", "item_id": item_id,
                 "content_index": 0, "audio_end_ms": 1500})
    assert client.until("error")["error"] == {
        "type": "invalid_request_error", "code": "invalid_value", "param": "audio_end_ms",
        "message": "Audio content of 1000ms is already shorter than 1500ms", "event_id": "evt_t1"}
    client.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                 "audio_end_ms": 1000})
    assert client.until("conversation.item.truncated")["audio_end_ms"] == 1000
    client.send({"type": "conversation.item.truncate", "event_id": "evt_t2", "item_id": "item_nope",
                 "content_index": 0, "audio_end_ms": 10})
    error = client.until("error")["error"]
    assert (error["code"], error["param"], error["event_id"]) == \
        ("item_truncate_invalid_item_id", "item_id", "evt_t2")
    assert "item_nope" in error["message"]
    client.close()


def test_truncate_of_a_cancelled_item_counts_only_the_audio_sent(slow_server):
    client = Client(slow_server.url)
    client.until("session.created")
    _, events = speak_over_a_reply(client)
    item_id = events[-1]["response"]["output"][0]["id"]
    sent = slow_server.connections[0].assistant_audio_ms[item_id]
    assert 0 < sent < 1000
    client.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                 "audio_end_ms": sent + 100})
    assert client.until("error")["error"]["message"] == \
        f"Audio content of {sent}ms is already shorter than {sent + 100}ms"
    client.close()


# -- the idle timeout ------------------------------------------------------------------------
def test_idle_timeout_after_the_reply_has_played_out(fast_server):
    """GA only: the beta models have no idle_timeout_ms."""
    client = Client(fast_server.url)
    client.until("session.created")
    updated = client.update_turn_detection({"type": "server_vad", "idle_timeout_ms": 500})
    assert updated == dict(GA_SERVER_VAD, idle_timeout_ms=500)
    client.send({"type": "response.create"})
    client.until("response.done")          # 1 s of tone, sent at once: it plays out at 1000 ms
    client.append(silence(24000, 1.4))
    assert not [e for e in client.quiet(0.5) if e["type"] == "input_audio_buffer.timeout_triggered"]
    client.append(silence(24000, 0.1))
    events = client.between("response.done")
    triggered = events[0]
    assert triggered["type"] == "input_audio_buffer.timeout_triggered"
    assert (triggered["audio_start_ms"], triggered["audio_end_ms"]) == (1000, 1500)
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    assert [e["item_id"] for e in committed] == [triggered["item_id"]]
    assert events[-1]["response"]["status"] == "completed"
    client.close()


def test_no_idle_timeout_unless_the_session_sets_one(fast_server):
    client = Client(fast_server.url)
    session = client.until("session.created")["session"]
    assert session["audio"]["input"]["turn_detection"] == GA_SERVER_VAD
    client.send({"type": "response.create"})
    client.until("response.done")
    client.append(silence(24000, 3.0))
    assert not [e for e in client.quiet(0.5) if e["type"] == "input_audio_buffer.timeout_triggered"]
    client.close()


# -- session.updated -------------------------------------------------------------------------
@pytest.mark.parametrize("generation,given,expected", [
    ("ga", {"type": "server_vad"}, GA_SERVER_VAD),
    ("ga", {"type": "server_vad", "silence_duration_ms": 300, "create_response": False},
     dict(GA_SERVER_VAD, silence_duration_ms=300, create_response=False)),
    ("ga", {"type": "semantic_vad"}, SEMANTIC_VAD),
    ("beta", {"type": "server_vad"}, SERVER_VAD),
    ("beta", {"type": "semantic_vad", "eagerness": "low"}, dict(SEMANTIC_VAD, eagerness="low")),
])
def test_session_updated_fills_in_turn_detection_defaults(fast_server, generation, given, expected):
    client = Client(fast_server.url, generation)
    client.until("session.created")
    assert client.update_turn_detection(given) == expected
    client.close()


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_turn_detection_null_stays_null_and_detects_no_turns(fast_server, generation):
    client = Client(fast_server.url, generation)
    client.until("session.created")
    assert client.update_turn_detection({"type": "server_vad", "threshold": 0.7}) == \
        dict(GA_SERVER_VAD if generation == "ga" else SERVER_VAD, threshold=0.7)
    assert client.update_turn_detection(None) is None
    client.append(speech(0.5) + silence(24000, 1.0))
    kinds = {e["type"] for e in client.quiet(0.5)}
    assert not kinds & {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                        "input_audio_buffer.committed", "response.created"}, kinds
    client.close()


# -- lenient ---------------------------------------------------------------------------------
def test_lenient_server_lets_speech_overlap_the_reply_and_truncates_as_before():
    with LocalRealtimeServer(api_key=KEY, speed=0.5, reply="tone", lenient=True) as server:
        client = Client(server.url)
        client.until("session.created")
        _, events = speak_over_a_reply(client)
        assert events[-1]["response"]["status"] == "completed"
        client.send({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0,
                     "audio_end_ms": 10})
        error = client.until("error")["error"]
        assert (error["code"], error["message"]) == \
            ("invalid_value", "audio_end_ms 10 is beyond the audio of item_nope")
        client.close()
        validate_recorded(server)


def test_lenient_on_the_command_line():
    here = os.path.dirname(os.path.dirname(openai_s2s.__file__))   # this copy, not an installed one
    proc = subprocess.Popen([sys.executable, "-m", "openai_s2s.localserver", "--port", "0",
                             "--api-key", KEY, "--speed", "0.5", "--reply", "tone", "--lenient"],
                            stdout=subprocess.PIPE, text=True, cwd=here,
                            env=dict(os.environ, PYTHONPATH=here))
    try:
        url = proc.stdout.readline().split("listening on ")[1].strip()
        client = Client(url)
        client.until("session.created")
        _, events = speak_over_a_reply(client)
        assert events[-1]["response"]["status"] == "completed"
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
