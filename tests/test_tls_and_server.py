"""TLS options against a TLS local server, and the local server's own protocol behaviour."""
import base64
import shutil
import ssl
import subprocess

import orjson
import pytest
import websocket

from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import KEY, Harness, tone, wait_until
from realtime_models import validate_client_event, validate_server_event


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


@pytest.fixture
def tls_server(cert):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    with LocalRealtimeServer(api_key=KEY, ssl_context=context) as server:
        yield server


def conf(**params: str) -> str:
    """openai_s2s.conf.xml with these settings: the TLS options are the config file's alone."""
    lines = "".join(f'<param name="{k.replace("_", "-")}" value="{v}"/>' for k, v in params.items())
    return f'<configuration name="openai_s2s.conf"><settings>{lines}</settings></configuration>'


@pytest.mark.parametrize("settings,variables,outcome", [
    ({}, {}, "tls: self-signed certificate"),
    ({"tls_ca_file": "CERT"}, {}, "connect"),
    ({"tls_verify": "false"}, {}, "connect"),
    ({"tls_ca_file": "CERT", "tls_verify_hostname": "true"}, {}, "connect"),
    # a channel variable cannot turn verification off or choose the CA
    ({}, {"openai_s2s_tls_verify": "false"}, "tls: self-signed certificate"),
    ({}, {"openai_s2s_tls_ca_file": "CERT"}, "tls: self-signed certificate"),
])
def test_certificate_verification_and_private_ca(tls_server, cert, settings, variables, outcome):
    fill = lambda d: {k: (cert[0] if v == "CERT" else v) for k, v in d.items()}  # noqa: E731
    h = Harness(tls_server, config_xml=conf(**fill(settings)))
    try:
        h.call("u-tls", **fill(variables))
        assert h.create("u-tls").startswith("+OK connecting to wss://")
        if outcome == "connect":
            assert h.connected("u-tls")
        else:
            headers, body = h.switch.wait_event("openai_s2s::connect_failed", timeout=10)
            assert orjson.loads(body)["reason"].startswith(outcome)
    finally:
        h.finish()


def test_hostname_check_can_be_turned_off(cert, tmp_path):
    # a certificate for another name: fails with the hostname check, passes without it
    other = tmp_path / "other.pem"
    key = tmp_path / "other.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=elsewhere.example", "-keyout", str(key), "-out", str(other)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(other), str(key))
    with LocalRealtimeServer(api_key=KEY, ssl_context=context) as server:
        for settings, outcome in (({"tls_ca_file": str(other)}, "tls:"),
                                  ({"tls_ca_file": str(other), "tls_verify_hostname": "false"}, None)):
            h = Harness(server, config_xml=conf(**settings))
            try:
                h.call("u-h")
                h.create("u-h")
                if outcome is None:
                    assert h.connected("u-h")
                else:
                    _, body = h.switch.wait_event("openai_s2s::connect_failed", timeout=10)
                    assert orjson.loads(body)["reason"].startswith(outcome)
            finally:
                h.finish()


# -- the local server on its own -------------------------------------------------------------
@pytest.fixture
def server():
    with LocalRealtimeServer(api_key=KEY, speed=0) as srv:
        yield srv


def connect(server, path="/v1/realtime?model=gpt-realtime", headers=None):
    ws = websocket.create_connection(server.url + path, timeout=5,
                                     header=headers or [f"Authorization: Bearer {KEY}"])
    return ws


def recv_until(ws, kind, generation="ga"):
    while True:
        event = orjson.loads(ws.recv())
        validate_server_event(event, generation)
        if event["type"] == kind:
            return event


def send(ws, event, generation="ga"):
    validate_client_event(event, generation)
    ws.send(orjson.dumps(event).decode())


def test_server_sends_small_frames_at_once(server):
    """TCP_NODELAY on the server's side: Nagle would hold each delta back for the client's ACK."""
    import socket
    ws = connect(server)
    recv_until(ws, "session.created")
    sock = server.connections[0].ws.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    ws.close()


def test_server_refuses_bad_key_and_path(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        connect(server, headers=["Authorization: Bearer nope"])
    assert exc.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        connect(server, path="/v2/other")
    assert exc.value.status_code == 404


def test_server_answers_beta_shape_on_ga_like_openai_does(server):
    ws = connect(server)
    recv_until(ws, "session.created")
    ws.send(orjson.dumps({"type": "session.update", "session": {"modalities": ["audio"]}}).decode())
    error = recv_until(ws, "error")
    assert error["error"]["code"] == "beta_api_shape_disabled"
    ws.close()


def test_server_cancel_without_response_and_bad_truncate(server):
    ws = connect(server)
    recv_until(ws, "session.created")
    send(ws, {"type": "response.cancel"})
    assert recv_until(ws, "error")["error"]["code"] == "response_cancel_not_active"
    send(ws, {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 5})
    assert recv_until(ws, "error")["error"]["code"] == "item_truncate_invalid_item_id"
    ws.close()


def test_server_text_response_and_truncate_of_a_real_item(server):
    ws = connect(server)
    recv_until(ws, "session.created")
    send(ws, {"type": "response.create"})
    delta = recv_until(ws, "response.output_audio.delta")
    audio = base64.b64decode(delta["delta"])
    assert len(audio) == 24000 * 2 // 10          # 100 ms of 24 kHz pcm
    recv_until(ws, "response.done")
    send(ws, {"type": "conversation.item.truncate", "item_id": delta["item_id"], "content_index": 0,
              "audio_end_ms": 300})
    assert recv_until(ws, "conversation.item.truncated")["audio_end_ms"] == 300
    send(ws, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    assert recv_until(ws, "response.output_text.done")["text"] == "tone"
    ws.close()


def test_server_beta_generation_by_header(server):
    ws = connect(server, headers=[f"api-key: {KEY}", "OpenAI-Beta: realtime=v1"])
    created = recv_until(ws, "session.created", "beta")
    assert created["session"]["input_audio_format"] == "pcm16"
    send(ws, {"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                                                    "output_audio_format": "g711_ulaw"}}, "beta")
    recv_until(ws, "session.updated", "beta")
    from openai_s2s.media import g711
    speech = g711.ulaw_encode(tone(300, 8000, 0.5)) + g711.ulaw_encode(bytes(8000 * 2))
    for i in range(0, len(speech), 800):
        send(ws, {"type": "input_audio_buffer.append",
                  "audio": base64.b64encode(speech[i:i + 800]).decode()}, "beta")
    recv_until(ws, "input_audio_buffer.speech_started", "beta")
    recv_until(ws, "input_audio_buffer.committed", "beta")
    delta = recv_until(ws, "response.audio.delta", "beta")
    assert len(base64.b64decode(delta["delta"])) == 800   # 100 ms of 8 kHz mu-law
    ws.close()


def test_read_ahead_parses_back_to_back_frames_with_fewer_reads(server):
    """The module's websocket reads ahead (connection.read_ahead): frames that arrive together
    are each parsed whole, from far fewer reads than the three per frame it made before."""
    from openai_s2s.realtime.endpoint import build_endpoint
    from openai_s2s.realtime.transport import open_websocket
    endpoint = build_endpoint(server.url, "v1/realtime?model=gpt-realtime", "bearer", KEY)
    ws = open_websocket(endpoint, {"send_timeout": 5.0})
    reads, inner = [], ws.frame_buffer.recv
    ws.frame_buffer.recv = lambda size: reads.append(size) or inner(size)
    try:
        for n in range(20):   # each earns an error event: 20 frames sent back to back
            ws.send(orjson.dumps({"type": "no.such.event", "event_id": f"e{n}"}))
        events = [orjson.loads(ws.recv()) for _ in range(21)]
    finally:
        ws.close()
    assert events[0]["type"] == "session.created"
    assert [e["error"]["event_id"] for e in events[1:]] == [f"e{n}" for n in range(20)]
    assert len(reads) < 2 * len(events), len(reads)
