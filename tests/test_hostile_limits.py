"""Floods from the caller's side and the server's: bounded queues with a clear -ERR,
buffer_overrun at most once a second, and no event for a session after its delete answered."""
from __future__ import annotations

import random
import socket
import threading
import time

import orjson
import pytest

from openai_s2s.call import registry
from engine_harness import KEY, SEED_SESSION_UPDATE, wait_until
from hostile import HostileServer
from hostile_kit import (SESSION_UPDATED, audio_response, events_for, h, named_for, status,  # noqa: F401
                         tone_b64, ws_then)


# -- 5. floods of client events -------------------------------------------------------------
def test_a_flood_of_response_create_before_session_updated_is_refused_once_full(h):
    h.call("u-held")
    h.create("u-held")
    h.connected("u-held")
    replies = [h.send("u-held", {"type": "response.create"}) for _ in range(200)]
    ok = [r for r in replies if r.startswith("+OK")]
    err = [r for r in replies if r.startswith("-ERR")]
    assert 1 <= len(ok) <= 64, len(ok)
    assert len(ok) + len(err) == 200 and err and "held" in err[0], err[:1]
    assert not [r for r in err if "internal error" in r]


def test_held_response_creates_are_bounded_in_bytes(h):
    h.call("u-heldb")
    h.create("u-heldb")
    h.connected("u-heldb")
    big = "x" * 1000000   # just under max-event-bytes (1 MB)
    accepted = 0
    for _ in range(64):
        r = h.send("u-heldb", {"type": "response.create", "response": {"instructions": big}})
        if not r.startswith("+OK"):
            break
        accepted += 1
    assert accepted * len(big) <= 16 << 20, accepted


def test_a_deeply_nested_response_create_held_until_session_updated_does_not_kill_the_session(h):
    """Accepted while held (nothing is serialized yet); released by the session.updated."""
    h.call("u-deep")
    h.create("u-deep")
    h.connected("u-deep")
    deep = "[" * 300 + "]" * 300
    reply = h.api('u-deep client.event {"type":"response.create","response":{"metadata":' + deep + '}}')
    h.send("u-deep", SEED_SESSION_UPDATE)
    time.sleep(1.0)
    assert registry.get("u-deep") is not None and status(h, "u-deep")["state"] == "connected", \
        (reply, named_for(h, "u-deep", "openai_s2s::disconnect"))
    assert not [line for line in h.logs if line.startswith("ERR")], [l for l in h.logs if l.startswith("ERR")][:2]


def _never_reads(release):
    def after(conn):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return ws_then(after, release, answer_close=False)


def test_client_events_to_a_server_that_never_reads_are_refused_once_full(h):
    release = threading.Event()
    with HostileServer(_never_reads(release)) as srv:
        h.call("u-full")
        h.create("u-full", host=srv.url)
        h.connected("u-full")
        text = "y" * 100000
        accepted, first_err = 0, None
        for _ in range(400):      # 40 MB if all were taken
            r = h.send("u-full", {"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
            if r.startswith("+OK"):
                accepted += 1
            else:
                first_err = r
                break
        assert first_err is not None, f"all {accepted} events of 100 KB were queued"
        assert first_err.startswith("-ERR") and "internal error" not in first_err, first_err
        assert accepted * 100000 < 24 << 20, accepted
        st = status(h, "u-full")["counters"]
        assert st["uplink_queued"] <= 256 + 2, st
        release.set()


def test_tiny_client_events_to_a_server_that_never_reads_are_bounded_in_count(h):
    release = threading.Event()
    with HostileServer(_never_reads(release)) as srv:
        h.call("u-fullc")
        h.create("u-fullc", host=srv.url)
        h.connected("u-fullc")
        # fill the socket first, then count what the queue takes
        filler = "z" * 200000
        for _ in range(200):
            if not h.send("u-fullc", {"type": "x.fill", "t": filler}).startswith("+OK"):
                break
        time.sleep(0.2)
        taken = sum(h.send("u-fullc", {"type": "response.cancel"}).startswith("+OK") for _ in range(2000))
        assert taken <= 256, taken
        release.set()


# -- 7. buffer_overrun at most once a second ---------------------------------------------
def test_uplink_overrun_is_reported_at_most_once_a_second_with_the_count(h):
    release = threading.Event()
    with HostileServer(_never_reads(release)) as srv:
        call = h.call("u-over", speed=8.0, openai_s2s_uplink_max_ms="100")
        h.create("u-over", host=srv.url)
        h.connected("u-over")
        h.send("u-over", SEED_SESSION_UPDATE)
        call.say(bytes(8000 * 2 * 60))
        # Count from when the socket is full: before that, how much the kernel takes depends on
        # its buffer sizes (over 1 MB on some machines), and a busy pump may drop a stray frame.
        deadline = time.monotonic() + 20
        while not status(h, "u-over")["counters"]["uplink_waiting_for_room"]:
            assert time.monotonic() < deadline, status(h, "u-over")["counters"]
            time.sleep(0.05)
        assert h.switch.wait_event("openai_s2s::buffer_overrun", lambda hd, b: hd.get("Unique-ID") == "u-over",
                                   timeout=6), status(h, "u-over")["counters"]
        mark = len(h.switch.events)
        time.sleep(3.0)
        overruns = named_for(h, "u-over", "openai_s2s::buffer_overrun", start=mark)
        up = [b for b in overruns if b.get("direction") == "uplink"]
        assert 2 <= len(up) <= 4, up
        assert all(b.get("dropped_ms", 0) > 0 for b in up), up
        release.set()


def test_playout_overrun_is_reported_at_most_once_a_second_with_the_count(h):
    release = threading.Event()

    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        conn.send_frame(b'{"type":"response.created","response":{"id":"r"}}')
        chunk = tone_b64(0.5)
        end = time.monotonic() + 5
        while time.monotonic() < end and not release.is_set():
            conn.send_frame(orjson.dumps({"type": "response.output_audio.delta", "response_id": "r",
                                          "item_id": "i", "content_index": 0, "delta": chunk}))
            time.sleep(0.01)
    with HostileServer(ws_then(after, release)) as srv:
        h.call("u-pover", openai_s2s_playout_max_ms="1000")
        h.create("u-pover", host=srv.url)
        h.connected("u-pover")
        assert h.switch.wait_event("openai_s2s::buffer_overrun", lambda hd, b: hd.get("Unique-ID") == "u-pover",
                                   timeout=4)
        mark = len(h.switch.events)
        time.sleep(3.0)
        overruns = [b for b in named_for(h, "u-pover", "openai_s2s::buffer_overrun", start=mark)
                    if b.get("direction") == "playout"]
        assert 2 <= len(overruns) <= 4, overruns
        assert all(b.get("dropped_deltas", 0) > 0 for b in overruns), overruns
        release.set()


# -- 3. nothing fires after session.delete answered ---------------------------------------
def test_nothing_fires_after_delete_mid_stream(h):
    release = threading.Event()

    def after(conn):
        conn.send_frame(SESSION_UPDATED)
        end = time.monotonic() + 6
        i = 0
        while time.monotonic() < end and not release.is_set():
            try:
                conn.send_frame(b'{"type":"t.%d"}' % i)
            except OSError:
                return
            i += 1
    with HostileServer(ws_then(after, release, answer_close=False)) as srv:
        h.call("u-mid")
        h.create("u-mid", host=srv.url)
        h.connected("u-mid")
        assert h.wait_server_event("u-mid", "t.500", timeout=5)
        assert h.api("u-mid session.delete") == "+OK session deleted"
        mark = len(h.switch.events)
        time.sleep(0.5)
        assert events_for(h, "u-mid", mark) == [], events_for(h, "u-mid", mark)[:3]
        release.set()


def test_create_then_delete_at_random_moments_tells_exactly_one_and_nothing_after(h):
    rng = random.Random(7)
    for i in range(25):
        uuid = f"u-race-{i}"
        h.call(uuid)
        mark = len(h.switch.events)
        assert h.create(uuid).startswith("+OK")
        time.sleep(rng.choice([0, 0, 0.001, 0.003, 0.01, 0.03]))
        assert h.api(f"{uuid} session.delete") == "+OK session deleted"
        told = [(n, orjson.loads(b)) for n, hd, b in events_for(h, uuid, mark)]
        names = [n for n, _ in told]
        first = [n for n in names if n in ("openai_s2s::connect", "openai_s2s::connect_failed")]
        assert len(first) == 1, told
        if first == ["openai_s2s::connect"]:
            assert names[-1] == "openai_s2s::disconnect", told
        else:
            assert "openai_s2s::disconnect" not in names, told
        after = len(h.switch.events)
        time.sleep(0.05)
        assert events_for(h, uuid, after) == [], (i, events_for(h, uuid, after))


def test_delete_while_the_server_accepts_tcp_but_never_reads_the_request(h):
    release = threading.Event()
    srv_sock = socket.socket()
    srv_sock.bind(("127.0.0.1", 0))
    srv_sock.listen(1)      # accepts in the kernel, never reads
    try:
        h.call("u-tcp", openai_s2s_connect_timeout="30")
        h.create("u-tcp", host=f"ws://127.0.0.1:{srv_sock.getsockname()[1]}")
        time.sleep(0.3)
        t0 = time.monotonic()
        assert h.api("u-tcp session.delete") == "+OK session deleted"
        assert time.monotonic() - t0 < 1.0
        told = [(n, orjson.loads(b)) for n, hd, b in events_for(h, "u-tcp")]
        assert told == [("openai_s2s::connect_failed", {"reason": "session.delete"})], told
        mark = len(h.switch.events)
        time.sleep(0.3)
        assert events_for(h, "u-tcp", mark) == []
    finally:
        srv_sock.close()
        release.set()
