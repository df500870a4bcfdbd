"""The local server counts, per connection, the input_audio_buffer.append events it took, the
audio bytes they carried and the events it sent, whether or not it records events (a load test turns recording off),
and serves every connection's counters as JSON on its stats page."""
import base64
import json
import urllib.request

import orjson
import pytest
import websocket

from openai_s2s.localserver import LocalRealtimeServer
from openai_s2s.localserver.server import STATS_PATH
from engine_harness import KEY, silence, tone, wait_until

UPDATE = {"type": "session.update", "session": {"type": "realtime", "audio": {
    "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
    "output": {"format": {"type": "audio/pcm", "rate": 24000}}}}}


def connect(server, path="/v1/realtime?model=gpt-realtime"):
    ws = websocket.create_connection(server.url + path, timeout=5, header=[f"Authorization: Bearer {KEY}"])
    assert orjson.loads(ws.recv())["type"] == "session.created"
    ws.send(orjson.dumps(UPDATE).decode())
    assert orjson.loads(ws.recv())["type"] == "session.updated"
    return ws


def append(ws, pcm: bytes) -> None:
    ws.send(orjson.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}).decode())


@pytest.mark.parametrize("record", [True, False])
def test_appends_and_audio_bytes_are_counted_per_connection(record):
    with LocalRealtimeServer(api_key=KEY, record=record) as server:
        first, second = connect(server, "/v1/realtime?model=m&call=one"), connect(server, "/v1/realtime?call=two")
        frame = silence(24000, 0.02)            # 960 bytes
        for _ in range(5):
            append(first, frame)
        append(second, tone(440, 24000, 0.1))   # 4800 bytes
        first.send('{"type":"input_audio_buffer.append","audio":"not base64!"}')   # refused: not counted
        assert orjson.loads(first.recv())["type"] == "error"
        assert wait_until(lambda: server.connections[1].appends == 1, 5)
        one, two = server.connections
        assert (one.appends, one.audio_bytes) == (5, 5 * 960)
        assert (two.appends, two.audio_bytes) == (1, 4800)
        assert len(one.received) == (7 if record else 0)   # recording is separate from counting
        first.close()
        second.close()


def test_the_stats_page_lists_every_connection_with_totals():
    with LocalRealtimeServer(api_key=KEY, record=False) as server:
        ws = connect(server, "/v1/realtime?model=m&bench_call=abc")
        for _ in range(3):
            append(ws, silence(24000, 0.02))
        assert wait_until(lambda: server.connections[0].appends == 3, 5)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{STATS_PATH}", timeout=5) as reply:
            assert reply.status == 200
            stats = json.loads(reply.read())
        assert stats["appends"] == 3 and stats["audio_bytes"] == 3 * 960
        [row] = stats["connections"]
        assert row["path"] == "/v1/realtime?model=m&bench_call=abc"
        assert (row["appends"], row["audio_bytes"], row["closed"]) == (3, 2880, False)
        assert row["events_sent"] == 2   # session.created, session.updated: appends answer nothing here
        ws.close()
