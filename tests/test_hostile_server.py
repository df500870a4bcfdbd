"""A server that misbehaves: events of the wrong shape, forbidden frames, huge frames, stalls,
closes, refusals. Only a close or a websocket protocol error may end the call."""
from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from openai_s2s.call import registry
from engine_harness import KEY, wait_until
from hostile import HostileServer
from hostile_kit import (SESSION_UPDATED, RssWatch, audio_response, disconnect_reason, h, heard_energy,  # noqa: F401
                         named_for, status, wait_named, ws_then)

# -- 4. events of the wrong shape ---------------------------------------------------------
BAD_SHAPES = {
    "session.created": [{"session": "x"}, {"session": 5}, {"session": [1]}, {"session": {"type": ["realtime"]}},
                        {"session": {"audio": "x"}}],
    "session.updated": [{"session": "x"}, {"session": {"audio": "x"}}, {"session": {"audio": {"input": 5}}},
                        {"session": {"audio": {"output": {"format": "audio/zz"}}}},
                        {"session": {"audio": {"output": {"format": {"type": 7, "rate": "x"}}}}},
                        {"session": {"input_audio_format": {"type": 3}}},
                        {"session": {"output_audio_format": ["pcm16"]}}],
    "response.created": [{"response": "x"}, {"response": 5}, {"response": {"id": ["x"]}},
                         {"response": {"id": {"a": 1}}}, {"response": None}],
    "response.done": [{"response": "done"}, {"response": 5}, {"response": {"id": {"x": 1}}},
                      {"response": {"id": ["x"]}}, {"response": [1, 2]}],
    "response.output_audio.delta": [
        {"delta": 5, "item_id": "i"}, {"delta": None}, {"delta": ["AAAA"]}, {"delta": {"a": "AAAA"}},
        {"delta": "!!!", "item_id": "i"}, {"delta": "A"}, {"delta": "AAA"}, {"delta": "AQ=="},
        {"delta": "AAAA", "item_id": {"x": 1}}, {"delta": "AAAA", "item_id": ["i"]}, {"delta": "AAAA", "item_id": 5},
        {"delta": "AAAA", "item_id": "i", "content_index": "zero"},
        {"delta": "AAAA", "item_id": "i", "content_index": 1 << 62},
        {"delta": "AAAA", "item_id": "i", "content_index": -1},
        {"delta": "AAAA", "item_id": "i", "content_index": 1.5},
        {"delta": "AAAA", "item_id": "i", "content_index": True},
        {"delta": "AAAA", "item_id": "i", "response_id": {"x": 1}},
        {"delta": "AAAA", "item_id": "i", "response_id": ["r"]}],
    "response.output_audio.done": [{"item_id": {"x": 1}}, {"item_id": "i", "content_index": [1]},
                                   {"item_id": "i", "content_index": "0"}, {"item_id": "i", "content_index": 1 << 40}],
    "input_audio_buffer.speech_started": [{"audio_start_ms": "x", "item_id": {"a": 1}}, {"item_id": 5}],
    "input_audio_buffer.timeout_triggered": [{"audio_start_ms": "x"}, {"item_id": [1]}],
    "error": [{"error": "boom"}, {"error": 5}, {"error": None}, {"error": [1]},
              {"error": {"code": ["x"], "message": {"a": 1}}}, {"error": {"code": 1 << 60, "message": 3.5}}],
}
BAD_SHAPES["response.audio.delta"] = BAD_SHAPES["response.output_audio.delta"]
BAD_SHAPES["response.audio.done"] = BAD_SHAPES["response.output_audio.done"]
CASES = [(kind, dict(fields, type=kind)) for kind, variants in BAD_SHAPES.items() for fields in variants]


def _shape_then_audio(bad: dict, repeat: int):
    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        payload = orjson.dumps(bad)
        for _ in range(repeat):
            conn.send_frame(payload)
        conn.send_frame(b'{"type":"marker.after_bad"}')
        time.sleep(0.3)
        audio_response(conn, deltas=8, seconds=0.1)
    return after


@pytest.mark.parametrize("kind,bad", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_an_event_of_the_wrong_shape_is_dropped_and_audio_still_plays(h, kind, bad):
    release = threading.Event()
    with HostileServer(ws_then(_shape_then_audio(bad, 50), release)) as srv:
        call = h.call("u-shape")
        assert h.create("u-shape", host=srv.url).startswith("+OK")
        assert h.connected("u-shape")
        assert h.wait_server_event("u-shape", "marker.after_bad", timeout=5), \
            named_for(h, "u-shape", "openai_s2s::disconnect")
        assert registry.get("u-shape") is not None and status(h, "u-shape")["state"] == "connected", \
            named_for(h, "u-shape", "openai_s2s::disconnect")
        assert wait_until(lambda: status(h, "u-shape")["counters"]["deltas"] >= 8, 5)
        assert wait_until(lambda: heard_energy(call) > 1000, 5), "no model audio reached the caller"
        assert status(h, "u-shape")["state"] == "connected"
        assert named_for(h, "u-shape", "openai_s2s::disconnect") == []
        assert not [line for line in h.logs if line.startswith("ERR")], [l for l in h.logs if l.startswith("ERR")][:3]
        release.set()


FLOODS = {
    "not json": b"this is not json {",
    "json without type": b'{"no":"type"}',
    "a list": b"[1,2,3]",
    "type not a string": b'{"type":5}',
    "malformed delta": orjson.dumps({"type": "response.output_audio.delta", "delta": 5}),
    "malformed response.done": orjson.dumps({"type": "response.done", "response": {"id": {"x": 1}}}),
    "error as a string": orjson.dumps({"type": "error", "error": "boom"}),
    "binary frame": None,
}


@pytest.mark.parametrize("name", list(FLOODS))
def test_a_flood_of_1000_bad_events_is_logged_a_few_times_only(h, name):
    release = threading.Event()

    def after(conn):
        for _ in range(1000):
            if FLOODS[name] is None:
                conn.send_frame(b"\x00\x01\x02", opcode=0x2)
            else:
                conn.send_frame(FLOODS[name])
        conn.send_frame(b'{"type":"marker.after_flood"}')

    with HostileServer(ws_then(after, release)) as srv:
        h.call("u-flood")
        h.create("u-flood", host=srv.url)
        h.connected("u-flood")
        assert h.wait_server_event("u-flood", "marker.after_flood", timeout=8)
        assert status(h, "u-flood")["state"] == "connected"
        noisy = [line for line in h.logs if line.startswith(("WARNING", "ERR", "NOTICE"))]
        assert len(noisy) < 20, (len(noisy), noisy[:2])
        release.set()


# -- 4. websocket protocol errors end the session as such ----------------------------------
PROTOCOL_ERRORS = {
    "rsv1 on text": lambda c: c.sock.sendall(b"\xc1\x02{}"),
    "rsv2": lambda c: c.sock.sendall(b"\xa1\x00"),
    "rsv3": lambda c: c.sock.sendall(b"\x91\x00"),
    "opcode 3": lambda c: c.sock.sendall(b"\x83\x00"),
    "opcode 7": lambda c: c.sock.sendall(b"\x87\x00"),
    "opcode 0xB": lambda c: c.sock.sendall(b"\x8b\x00"),
    "opcode 0xF": lambda c: c.sock.sendall(b"\x8f\x00"),
    "masked text": lambda c: c.sock.sendall(b"\x81\x82abcd" + bytes(2)),
    "masked ping": lambda c: c.sock.sendall(b"\x89\x80abcd"),
    "ping of 126": lambda c: c.send_frame(bytes(126), opcode=0x9),
    "pong of 200": lambda c: c.send_frame(bytes(200), opcode=0xA),
    "close of 200": lambda c: c.send_frame(b"\x03\xe8" + bytes(198), opcode=0x8),
    "fragmented ping": lambda c: c.send_frame(b"x", opcode=0x9, fin=False),
    "continuation first": lambda c: c.send_frame(b'{"type":"x"}', opcode=0x0),
    "text inside a fragmented text": lambda c: (c.send_frame(b'{"ty', opcode=0x1, fin=False),
                                                c.send_frame(b'{"type":"x"}', opcode=0x1)),
    "64-bit length with the top bit set": lambda c: c.sock.sendall(b"\x81\x7f" + (1 << 63).to_bytes(8, "big")),
}


@pytest.mark.parametrize("name", list(PROTOCOL_ERRORS))
def test_a_websocket_protocol_error_ends_the_session_as_one(h, name):
    with HostileServer(ws_then(PROTOCOL_ERRORS[name])) as srv:
        h.call("u-proto")
        h.create("u-proto", host=srv.url)
        h.connected("u-proto")
        reason = disconnect_reason(h, "u-proto", timeout=5)
        assert reason is not None, "the session did not end"
        assert reason.startswith("protocol error: "), reason
        assert "internal error" not in reason


# -- 5. memory bounded -----------------------------------------------------------------
def _send_quietly(conn, data: bytes) -> None:
    conn.sock.settimeout(5)
    try:
        conn.sock.sendall(data)
    except OSError:
        pass


def test_a_20_mb_frame_ends_the_session_without_reading_it_into_memory(h):
    payload = b'{"type":"x","a":"' + b"A" * (20 << 20) + b'"}'
    with HostileServer(ws_then(lambda c: _send_quietly(c, c.frame(payload)), answer_close=False)) as srv:
        h.call("u-big")
        with RssWatch() as rss:
            h.create("u-big", host=srv.url)
            h.connected("u-big")
            reason = disconnect_reason(h, "u-big", timeout=8)
        assert reason is not None and reason.startswith("protocol error: "), reason
        assert rss.growth < 100, f"RSS grew by {rss.growth:.0f} MB"


def test_continuation_frames_over_16_mb_end_the_session_with_bounded_memory(h):
    def after(c):
        chunk = bytes(256 << 10)
        _send_quietly(c, c.frame(chunk, opcode=0x1, fin=False))
        for _ in range(80):    # 20 MB in all
            _send_quietly(c, c.frame(chunk, opcode=0x0, fin=False))
    with HostileServer(ws_then(after, answer_close=False)) as srv:
        h.call("u-cont")
        with RssWatch() as rss:
            h.create("u-cont", host=srv.url)
            h.connected("u-cont")
            reason = disconnect_reason(h, "u-cont", timeout=8)
        assert reason is not None and reason.startswith("protocol error: "), reason
        assert rss.growth < 100, f"RSS grew by {rss.growth:.0f} MB"


def test_many_fragmented_pings_and_tiny_continuations_do_not_grow_without_bound(h):
    """A message that never ends, in 1-byte continuations: bounded by max-frame-bytes (16 MB)
    long before memory is a question; here 200,000 of them must not hang the receiver."""
    def after(c):
        c.send_frame(b"[", opcode=0x1, fin=False)
        one = c.frame(b" ", opcode=0x0, fin=False)
        _send_quietly(c, one * 200000)
        c.send_frame(b"]", opcode=0x0, fin=True)
        c.send_frame(b'{"type":"marker.after"}')
    with HostileServer(ws_then(after)) as srv:
        h.call("u-tiny")
        h.create("u-tiny", host=srv.url)
        h.connected("u-tiny")
        assert h.wait_server_event("u-tiny", "marker.after", timeout=8)
        assert status(h, "u-tiny")["state"] == "connected"


# -- 9. a response that ends without its audio-done ----------------------------------------
@pytest.mark.parametrize("variant", ["done without audio.done", "deltas without response_id",
                                     "done without an id", "cancelled"])
def test_a_response_without_its_audio_done_still_ends_playout(h, variant):
    release = threading.Event()

    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        if variant == "done without an id":
            audio_response(conn, deltas=5, seconds=0.1, audio_done=False, done=False)
            conn.send_frame(b'{"type":"response.done","response":{}}')
        elif variant == "cancelled":
            audio_response(conn, deltas=5, seconds=0.1, audio_done=False, done=False)
            conn.send_frame(b'{"type":"response.done","response":{"id":"resp_1","status":"cancelled"}}')
        else:
            audio_response(conn, deltas=5, seconds=0.1, audio_done=False,
                           response_id_on_deltas=variant != "deltas without response_id")

    with HostileServer(ws_then(after, release)) as srv:
        h.call("u-nodone")
        h.create("u-nodone", host=srv.url)
        h.connected("u-nodone")
        assert h.wait_server_event("u-nodone", "output_audio.playback_started", timeout=5)
        stopped = h.wait_server_event("u-nodone", "output_audio.playback_stopped", timeout=4)
        assert stopped is not None, "no playback_stopped: playout waits for audio that never comes"
        time.sleep(0.2)
        first = status(h, "u-nodone")["counters"]["underruns"]
        time.sleep(1.0)
        assert status(h, "u-nodone")["counters"]["underruns"] == first, "underruns still growing"
        release.set()


# -- 10. the server ends or stalls ---------------------------------------------------------
def test_a_close_without_a_close_frame_ends_the_session(h):
    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        conn.sock.shutdown(socket.SHUT_RDWR)
    with HostileServer(ws_then(after, answer_close=False)) as srv:
        h.call("u-rst")
        h.create("u-rst", host=srv.url)
        h.connected("u-rst")
        reason = disconnect_reason(h, "u-rst", timeout=5)
        assert reason is not None and reason.startswith("connection lost"), reason


def test_close_1011_mid_response_ends_the_session_with_the_code(h):
    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        audio_response(conn, deltas=5, seconds=0.2, audio_done=False, done=False)
        conn.send_frame(b"\x03\xf3internal", opcode=0x8)
    with HostileServer(ws_then(after)) as srv:
        h.call("u-1011")
        h.create("u-1011", host=srv.url)
        h.connected("u-1011")
        body = wait_named(h, "u-1011", "openai_s2s::disconnect", timeout=5)
        assert body is not None and body["code"] == 1011, body
        assert not body["reason"].startswith("internal error"), body
        assert wait_until(lambda: registry.get("u-1011") is None, 3)


def test_a_stall_before_the_handshake_ends_by_the_connect_timeout(h):
    release = threading.Event()
    with HostileServer(lambda conn: release.wait(10)) as srv:
        h.call("u-stall0", openai_s2s_connect_timeout="1")
        t0 = time.monotonic()
        h.create("u-stall0", host=srv.url)
        body = wait_named(h, "u-stall0", "openai_s2s::connect_failed", timeout=4)
        assert body == {"reason": "timeout"}, body
        assert time.monotonic() - t0 < 3
        release.set()


@pytest.mark.parametrize("where", ["after the handshake", "mid-frame", "reads but never pongs"])
def test_a_server_that_stalls_is_ended_by_the_ping_timeout(h, where):
    release = threading.Event()

    def after(conn):
        if where == "mid-frame":
            conn.sock.sendall(conn.frame(b"", declared=1000) + b'{"type":"resp')
        elif where == "reads but never pongs":
            conn.sock.settimeout(0.2)
            end = time.monotonic() + 10
            while not release.is_set() and time.monotonic() < end:
                try:
                    if not conn.sock.recv(65536):
                        return
                except OSError:
                    pass
    with HostileServer(ws_then(after, release, answer_close=False)) as srv:
        h.call("u-stall", openai_s2s_ping_interval="1", openai_s2s_send_timeout="1")
        h.create("u-stall", host=srv.url)
        h.connected("u-stall")
        reason = disconnect_reason(h, "u-stall", timeout=7)
        assert reason == "ping timeout", reason
        release.set()


@pytest.mark.parametrize("where", ["after the handshake", "mid-frame"])
def test_a_stalled_session_is_deleted_promptly(h, where):
    release = threading.Event()

    def after(conn):
        if where == "mid-frame":
            conn.sock.sendall(conn.frame(b"", declared=1000) + b'{"type":"resp')
    with HostileServer(ws_then(after, release, answer_close=False)) as srv:
        h.call("u-stalld")
        h.create("u-stalld", host=srv.url)
        h.connected("u-stalld")
        time.sleep(0.3)
        t0 = time.monotonic()
        assert h.api("u-stalld session.delete") == "+OK session deleted"
        assert time.monotonic() - t0 < 2.0, time.monotonic() - t0
        release.set()


@pytest.mark.parametrize("garbage", [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", b"\x00" * 64,
                                     b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                                     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                     b"Sec-WebSocket-Accept: AAAA\r\n\r\n",
                                     b"HTTP/1.1 101 " + b"x" * 100000 + b"\r\n\r\n"])
def test_garbage_instead_of_a_handshake_is_a_connect_failed_not_an_internal_error(h, garbage):
    def behave(conn):
        conn.sock.sendall(garbage)
        time.sleep(0.5)
    with HostileServer(behave) as srv:
        h.call("u-garb", openai_s2s_connect_timeout="2")
        h.create("u-garb", host=srv.url)
        body = wait_named(h, "u-garb", "openai_s2s::connect_failed", timeout=4)
        assert body is not None, named_for(h, "u-garb", "openai_s2s::connect")
        assert not body["reason"].startswith("internal error"), body
        assert not [line for line in h.logs if line.startswith("ERR")]


def test_binary_frames_are_ignored_and_logged(h):
    release = threading.Event()

    def after(conn):
        conn.send_frame(b"\x01\x02", opcode=0x2)
        conn.send_frame(b'{"type":"marker.after"}')
    with HostileServer(ws_then(after, release)) as srv:
        h.call("u-bin")
        h.create("u-bin", host=srv.url)
        h.connected("u-bin")
        assert h.wait_server_event("u-bin", "marker.after", timeout=5)
        assert status(h, "u-bin")["state"] == "connected"
        assert any("binary" in line for line in h.logs), h.logs[-5:]
        release.set()


def test_a_flood_of_10000_tiny_events_is_forwarded_and_the_session_lives(h):
    release = threading.Event()

    def after(conn):
        conn.sock.sendall(b"".join(conn.frame(b'{"type":"t.%d"}' % i) for i in range(10000)))
        conn.send_frame(b'{"type":"marker.after"}')
    with HostileServer(ws_then(after, release)) as srv:
        h.call("u-tinyflood")
        h.create("u-tinyflood", host=srv.url)
        h.connected("u-tinyflood")
        assert h.wait_server_event("u-tinyflood", "marker.after", timeout=8)
        assert status(h, "u-tinyflood")["counters"]["events_in"] >= 10001
        assert status(h, "u-tinyflood")["state"] == "connected"
        release.set()


def test_delete_answers_promptly_when_the_server_never_reads(h):
    release = threading.Event()
    with HostileServer(ws_then(lambda c: None, release, answer_close=False)) as srv:
        h.call("u-noread")
        h.create("u-noread", host=srv.url)
        h.connected("u-noread")
        big = '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":' \
              '[{"type":"input_text","text":"' + "x" * 500000 + '"}]}}'
        for _ in range(60):      # until the socket is full and the queue refuses
            if not h.api(f"u-noread client.event {big}").startswith("+OK"):
                break
        time.sleep(0.3)
        t0 = time.monotonic()
        assert h.api("u-noread session.delete") == "+OK session deleted"
        assert time.monotonic() - t0 < 2.5, time.monotonic() - t0
        release.set()


@pytest.mark.parametrize("code", [400, 401, 403, 404, 429, 500, 503])
def test_a_refusal_is_connect_failed_with_the_http_code(h, code):
    with HostileServer(lambda conn: conn.http(code, "No", body=b'{"error":"no"}')) as srv:
        h.call("u-refuse")
        h.create("u-refuse", host=srv.url)
        assert wait_named(h, "u-refuse", "openai_s2s::connect_failed", timeout=5) == {"reason": f"http {code}"}
        assert named_for(h, "u-refuse", "openai_s2s::connect") == []
