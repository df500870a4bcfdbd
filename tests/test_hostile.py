"""Servers that refuse, redirect or misbehave: the module must say why, keep the key, and
never let the server end anything but its own session."""
import orjson
import pytest

from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import GA_PATH, KEY, Harness, wait_until
from hostile import HostileServer


@pytest.fixture
def h():
    with LocalRealtimeServer(api_key=KEY) as srv:
        harness = Harness(srv)
        yield harness
        harness.finish()


def connect_failed(h, uuid, timeout=10.0):
    found = h.switch.wait_event("openai_s2s::connect_failed", lambda hd, b: hd.get("Unique-ID") == uuid, timeout)
    assert found is not None, f"no connect_failed for {uuid}"
    return orjson.loads(found[1])["reason"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_a_redirect_is_refused_and_the_key_goes_nowhere_else(h, status, scheme):
    with HostileServer(lambda conn: None) as elsewhere:
        where = f"{scheme}://127.0.0.1:{elsewhere.port}/v1/realtime"
        with HostileServer(lambda conn: conn.http(status, "Moved", {"Location": where})) as redirector:
            h.call("u-redir")
            assert h.create("u-redir", host=redirector.url).startswith("+OK")
            assert connect_failed(h, "u-redir") == "http %d redirect to 127.0.0.1 refused" % status
            assert redirector.conns[0].headers["authorization"] == f"Bearer {KEY}"
            assert elsewhere.conns == []


def test_a_redirect_location_with_control_bytes_is_not_echoed(h):
    with HostileServer(lambda conn: conn.http(307, "Moved", {"Location": "ws://evil\x1b[31m.example/x"})) as srv:
        h.call("u-redir2")
        h.create("u-redir2", host=srv.url)
        assert connect_failed(h, "u-redir2") == "http 307 redirect to an invalid location refused"
