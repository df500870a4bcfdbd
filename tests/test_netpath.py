"""The engine against the local server over a real network path (see netpath.py): a veth pair
into a network namespace, MTU 1500, 20 mbit, 0.5 % loss each way and 30-50 ms of delay each way.

The server runs in the namespace, in its own process, so what it received is read from what it
answers: its session.updated carries the whole session back (instructions included), and its
VAD's speech_started and its echoed reply show the caller's audio arrived.

    PYTHONPATH=. python3 -m pytest -q -m netpath tests/test_netpath.py
"""
import time

import orjson
import pytest

from openai_s2s.call import registry
from engine_harness import SEED_SESSION_UPDATE, Harness, dominant_freq, loud, silence, tone, wait_until
from openai_s2s.tools.netpath import KEY_OVER_WS, NetPath, NetPathUnavailable

pytestmark = pytest.mark.netpath

KEY = "sk-netpath-0123456789abcdef-SECRET"


@pytest.fixture
def path():
    try:
        made = NetPath(api_key=KEY).__enter__()
    except NetPathUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def h(path):
    harness = Harness(path, config_xml=KEY_OVER_WS)
    yield harness
    try:
        harness.finish()
    finally:
        assert KEY not in "\n".join(harness.logs)


def start(h, path, uuid, **variables):
    call = h.call(uuid, **variables)
    reply = h.create(uuid, host=path.url, key=KEY)
    assert reply.startswith(f"+OK connecting to {path.url}"), reply
    assert h.connected(uuid, timeout=15), f"no connect over the path: {h.logs[-5:]}"
    return call


def status(h, uuid):
    reply = h.api(f"{uuid} status")
    assert reply.startswith("+OK"), reply
    return orjson.loads(reply[4:])


def with_instructions(text):
    return dict(SEED_SESSION_UPDATE, session=dict(SEED_SESSION_UPDATE["session"], instructions=text))


def test_a_66_kb_session_update_reaches_the_server_over_the_path_and_caller_audio_follows(h, path):
    call = start(h, path, "n-big")
    instructions = ("You are the front desk of ACME. " * 2100)[:66_000]
    assert h.send("n-big", with_instructions(instructions)).startswith("+OK")
    got = h.wait_server_event("n-big", "session.updated", timeout=20)
    assert got is not None, f"no session.updated: the update never reached the server ({h.logs[-5:]})"
    assert orjson.loads(got[1])["session"]["instructions"] == instructions
    assert status(h, "n-big")["counters"]["uplink_fragments"] > 0   # it did not fit the room at once
    call.say(tone(440, call.rate, 0.6) + silence(call.rate, 0.8))
    assert h.wait_server_event("n-big", "input_audio_buffer.speech_started", timeout=15), \
        "the server's VAD never heard the caller"
    assert h.wait_server_event("n-big", "response.done", timeout=20)
    s = status(h, "n-big")
    assert s["state"] == "connected" and s["counters"]["appends"] > 0
    assert not h.switch.named("openai_s2s::buffer_overrun")
    assert not h.switch.named("openai_s2s::disconnect")


def test_audio_goes_both_ways_over_the_lossy_delayed_path(h, path):
    call = start(h, path, "n-audio")
    h.send("n-audio", SEED_SESSION_UPDATE)
    assert h.wait_server_event("n-audio", "session.updated", timeout=15)
    for turn in range(2):
        after = len(h.switch.events)
        call.say(tone(440, call.rate, 0.6) + silence(call.rate, 0.8))
        assert h.wait_server_event("n-audio", "input_audio_buffer.speech_started", timeout=15, after=after)
        stopped = h.wait_server_event("n-audio", "output_audio.playback_stopped", timeout=20, after=after)
        assert stopped is not None, f"turn {turn}: the caller never heard the whole reply"
        assert orjson.loads(stopped[1])["completion_reason"] == "completed"
    heard = loud(bytes(call.heard))
    assert len(heard) > call.rate * 2 * 0.3
    assert abs(dominant_freq(heard, call.rate) - 440) < 5
    s = status(h, "n-audio")
    assert s["state"] == "connected" and s["uplink_open"]
    assert s["counters"]["appends"] > 0 and s["counters"]["deltas"] > 0 and s["counters"]["frames_out"] > 0
    for side in ("uplink", "downlink"):
        assert s["latency_ms"][side]["n"] > 0 and s["latency_ms"][side]["p50"] is not None, s["latency_ms"]
    assert not h.switch.named("openai_s2s::disconnect")


def test_a_path_that_goes_black_mid_call_ends_the_session_with_a_ping_timeout(h, path):
    call = start(h, path, "n-dark", openai_s2s_ping_interval="1", openai_s2s_send_timeout="1")
    h.send("n-dark", SEED_SESSION_UPDATE)
    assert h.wait_server_event("n-dark", "session.updated", timeout=15)
    call.say(tone(440, call.rate, 0.6) + silence(call.rate, 0.8))
    assert h.wait_server_event("n-dark", "input_audio_buffer.speech_started", timeout=15)
    path.blackhole()
    call.say(tone(440, call.rate, 2.0))                # the caller goes on talking into the dark
    gone = h.switch.wait_event("openai_s2s::disconnect", lambda hd, b: hd.get("Unique-ID") == "n-dark", 15)
    assert gone is not None, f"the session outlived a dead path: {status(h, 'n-dark')}"
    assert orjson.loads(gone[1])["reason"] == "ping timeout", gone[1]
    assert wait_until(lambda: registry.get("n-dark") is None, 10)
    assert sum(path.dropped()) > 0


def test_the_path_is_what_the_tests_say_it_is(path):
    """MTU 1500 on both ends, a tbf rate cap, the loss rule, and the relay's delay (a request
    across it cannot be answered in less than two of its minimum delays)."""
    import socket
    from openai_s2s.tools.netpath import RELAY_PORT, run
    for prefix, dev in (((), path.veth), (("ip", "netns", "exec", path.ns), path.peer)):
        assert " mtu 1500 " in run(*prefix, "ip", "-o", "link", "show", dev).stdout
        assert "tbf" in run(*prefix, "tc", "qdisc", "show", "dev", dev).stdout
    rules = run("nft", "list", "table", "inet", path.table).stdout
    assert rules.count("numgen random mod 1000 < 5") == 2, rules
    with socket.create_connection((path.far, RELAY_PORT), timeout=5) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 404")
        assert time.monotonic() - started >= 2 * path.delay[0]
