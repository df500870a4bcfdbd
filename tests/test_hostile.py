import socket
"""Servers that refuse, redirect or misbehave: the module must say why, keep the key, and
never let the server end anything but its own session."""
import orjson
import pytest

from openai_s2s.call import registry
from engine_harness import KEY, wait_until
from hostile import HostileServer


@pytest.fixture
def h(local_harness):
    return local_harness


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


def _ws_then(frames_after):
    """A server that accepts the upgrade, sends session.created, then ``frames_after(conn)``."""
    def behave(conn):
        conn.accept_websocket()
        conn.send_frame(b'{"type":"session.created","session":{"type":"realtime"}}')
        frames_after(conn)
        conn.answer_close()
    return behave


def disconnect_reason(h, uuid, timeout=10.0):
    found = h.switch.wait_event("openai_s2s::disconnect", lambda hd, b: hd.get("Unique-ID") == uuid, timeout)
    assert found is not None, f"no disconnect for {uuid}"
    return orjson.loads(found[1])["reason"]


@pytest.mark.parametrize("name,send,reason", [
    ("huge declared frame", lambda c: c.sock.sendall(c.frame(b"", declared=1 << 62)),
     "protocol error: a frame of 4611686018427387904 bytes is over max-frame-bytes (16777216)"),
    ("masked frame", lambda c: c.sock.sendall(b"\x81\x85abcd" + bytes(5)), "protocol error: the server masked a frame"),
    ("reserved bits", lambda c: c.sock.sendall(b"\xf1\x00"), "protocol error: "),
    ("unknown opcode", lambda c: c.sock.sendall(b"\x83\x00"), "protocol error: "),
    ("long control frame", lambda c: c.send_frame(bytes(126), opcode=0x9), "protocol error: "),
    ("endless message", lambda c: [c.send_frame(bytes(1 << 20), opcode=0x1 if i == 0 else 0x0, fin=False)
                                   for i in range(18)],
     "protocol error: a fragmented message of over 16777216 bytes (max-frame-bytes)"),
])
def test_a_frame_the_rfc_forbids_or_too_large_ends_the_session_as_a_protocol_error(h, name, send, reason):
    with HostileServer(_ws_then(send)) as srv:
        h.call("u-proto")
        h.create("u-proto", host=srv.url)
        h.connected("u-proto")
        got = disconnect_reason(h, "u-proto")
        assert got.startswith(reason), got
        assert "internal error" not in got


def test_a_session_deleted_while_the_server_stalls_the_upgrade_says_connect_failed_at_once(h):
    with HostileServer(lambda conn: conn.sock.recv(1)) as srv:   # reads the request, answers nothing
        h.call("u-stall-up", openai_s2s_connect_timeout="30")
        assert h.create("u-stall-up", host=srv.url).startswith("+OK")
        assert wait_until(lambda: srv.conns, 5)
        assert h.api("u-stall-up session.delete") == "+OK session deleted"
        told = [(name, orjson.loads(body)) for name, hd, body in h.switch.events if hd.get("Unique-ID") == "u-stall-up"]
        assert told == [("openai_s2s::connect_failed", {"reason": "session.delete"})]
        assert not [line for line in h.logs if line.startswith("ERR")]


@pytest.mark.parametrize("event", [
    {"type": "response.output_audio.delta", "delta": "AAAA", "item_id": {"x": 1}, "content_index": 0},
    {"type": "response.output_audio.delta", "delta": "AAAA", "item_id": "i", "content_index": "zero"},
    {"type": "response.output_audio.delta", "delta": 5, "item_id": "i"},
    {"type": "response.output_audio.delta", "delta": "!!!", "item_id": "i"},
    {"type": "response.output_audio.done", "item_id": "i", "content_index": [1]},
    {"type": "response.created", "response": {"id": ["x"]}},
    {"type": "response.done", "response": "done"},
    {"type": "session.updated", "session": {"audio": {"input": {"format": {"type": ["audio/pcmu"]}}}}},
    {"type": "session.updated", "session": {"input_audio_format": {"type": 3}}},
    {"type": "error", "error": "boom"},
    {"type": "error", "error": {"code": ["x"], "message": {"a": 1}}},
])
def test_a_server_event_of_the_wrong_shape_is_dropped_and_the_call_goes_on(h, event):
    def send(conn):
        for _ in range(200):
            conn.send_frame(orjson.dumps(event))
        conn.send_frame(b'{"type":"session.updated","session":{"type":"realtime"}}')
    with HostileServer(_ws_then(send)) as srv:
        h.call("u-shape")
        h.create("u-shape", host=srv.url)
        h.connected("u-shape")
        assert h.wait_server_event("u-shape", "session.updated")
        assert registry.get("u-shape").state == "connected"
        warnings = [line for line in h.logs if line.startswith("WARNING")]
        assert len(warnings) < 20, warnings[:5]


def test_a_key_is_kept_for_redaction_only_while_a_session_uses_it(h):
    from openai_s2s import log
    other = "sk-other-0123456789-abcdef"
    # A listener that never answers the upgrade: both sessions stay connecting, whatever the
    # timing (the local server would refuse this key, and its 401 would end them at once).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        for uuid in ("u-k1", "u-k2"):
            h.call(uuid)
            assert h.create(uuid, key=other, host=host).startswith("+OK")
        assert other in log._secrets
        h.api("u-k1 session.delete")
        assert other in log._secrets            # u-k2 still sends it
        h.api("u-k2 session.delete")
        assert other not in log._secrets
    assert log.redact(f"x {other} y") == "x *** y"   # still scrubbed by its shape
