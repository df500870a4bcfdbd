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


def test_a_configured_key_goes_only_to_the_allowed_hosts(h, monkeypatch):
    """Refused before any connection is tried: nothing is created, no event fires."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    h.call("u-keyhost")
    reply = h.create("u-keyhost", host="wss://realtime.evil.example", key=None)
    assert reply.startswith("-ERR the configured API key is not sent to realtime.evil.example")
    h.call("u-keyvar", openai_s2s_api_key=KEY)
    assert h.create("u-keyvar", host="evil.example", key=None).startswith("-ERR the configured API key")
    assert h.api("u-keyhost status").startswith("-ERR no openai_s2s session")
    assert h.switch.events == []
    # given on the command line, it goes where the command says (here: a refusing local port)
    assert h.create("u-keyhost", host="wss://127.0.0.1:1", key=KEY).startswith("+OK")


def test_no_key_in_clear_text_off_this_machine(h):
    h.call("u-plain")
    reply = h.create("u-plain", host="ws://192.0.2.10:8765", key=KEY)
    assert reply == ("-ERR refusing to send an API key over plain ws:// to 192.0.2.10 "
                     "(key-over-ws in openai_s2s.conf.xml allows it)")
    assert h.switch.events == []
