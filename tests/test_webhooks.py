"""Webhook tools against the local Realtime server and a local HTTP server: the POST and its
signature, the answer as the function_call_output and the response.create after it, and every
way a webhook can fail heard by the model as an error, never a hang, never the key sent."""
import hashlib
import hmac
import shutil
import ssl
import subprocess
import time

import orjson
import pytest

from engine_harness import KEY, Harness, wait_until
from openai_s2s import log
from openai_s2s.call import registry
from openai_s2s.control import agent, webhooks
from test_toolcalls import TOOLS_UPDATE
from webhook_server import WebhookServer

SECRET = "whsec-local-0123456789"
TOOL = TOOLS_UPDATE["session"]["tools"][0]


def conf(**params: str) -> str:
    lines = "".join(f'<param name="{k.replace("_", "-")}" value="{v}"/>' for k, v in params.items())
    return f'<configuration name="openai_s2s.conf"><settings>{lines}</settings></configuration>'


@pytest.fixture
def hook():
    srv = WebhookServer()
    yield srv
    srv.close()


def harness(server, tmp_path, **params):
    return Harness(server, conf(instructions_dir=str(tmp_path), **params))


@pytest.fixture
def wh(server, tmp_path):
    h = harness(server, tmp_path, webhook_secret=SECRET)
    yield h
    h.finish()


def tools_file(tmp_path, url, **extra):
    (tmp_path / "tools.json").write_text(orjson.dumps([dict(TOOL, url=url, **extra)]).decode())


def start(h, uuid, **variables):
    h.call(uuid, openai_s2s_tools_file="tools.json", caller_id_number="5551234",
           destination_number="5055", **variables)
    assert h.create(uuid).startswith("+OK")
    assert h.connected(uuid)
    h.send(uuid, TOOLS_UPDATE)
    h.wait_server_event(uuid, "session.updated")
    h.send(uuid, {"type": "response.create"})


def outputs(h):
    return [e["item"]["output"] for e in h.received() if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"]


def answered(h):
    """The one function_call_output, once the response.create after it has gone too."""
    assert wait_until(lambda: outputs(h), 10)
    kinds = [e["type"] for e in h.received()]
    assert wait_until(lambda: [e["type"] for e in h.received()][kinds.index("conversation.item.create"):]
                      .count("response.create") == 1)
    return outputs(h)[0]


def test_a_webhook_round_trip_signed_and_without_the_key(wh, hook, tmp_path):
    tools_file(tmp_path, hook.url)
    start(wh, "wh-ok")
    output = answered(wh)
    assert output == '{"status": "shipped"}'   # the webhook's JSON as its text
    raw = hook.request()
    head, _, body = raw.partition(b"\r\n\r\n")
    call = wh.server_events("wh-ok", "response.output_item.done")[0]["item"]
    assert orjson.loads(body) == {"name": "lookup_order", "arguments": {"order": "test"},
                                  "call_id": call["call_id"], "uuid": "wh-ok", "caller": "5551234",
                                  "callee": "5055"}
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert f"X-Signature: sha256={expected}".encode() in head.split(b"\r\n")
    assert KEY.encode() not in raw and b"authorization" not in raw.lower()
    assert SECRET.encode() not in raw
    assert log.redact(f"leaked {SECRET}") == "leaked ***"   # redacted while the session lasts
    assert wait_until(lambda: len(wh.server_events("wh-ok", "response.done")) >= 2)
    assert wh.server_events("wh-ok", "error") == []
    wh.api("wh-ok session.delete")
    assert not any(SECRET in line for line in wh.logs)


def test_the_secret_is_forgotten_when_the_session_ends(wh, hook, tmp_path):
    tools_file(tmp_path, hook.url)
    before = log.secrets_kept()
    start(wh, "wh-forget")
    assert log.secrets_kept() == before + 2      # the key and the webhook secret
    wh.api("wh-forget session.delete")
    assert log.secrets_kept() == before


@pytest.mark.parametrize("status, body, headers, expected", [
    (503, b'{"down": true}', {}, {"error": "webhook answered http 503"}),
    (200, b"<html>ok</html>", {"Content-Type": "text/html"},
     {"error": "webhook answered something that is not JSON"}),
    (200, b"", {}, {"error": "webhook answered something that is not JSON"}),
])
def test_a_webhook_that_fails_is_an_error_the_model_hears(wh, hook, tmp_path, status, body, headers, expected):
    hook.status, hook.body = status, body
    hook.headers.update(headers)
    tools_file(tmp_path, hook.url)
    start(wh, "wh-bad")
    assert orjson.loads(answered(wh)) == expected
    assert wh.server_events("wh-bad", "error") == []


def test_a_redirect_is_not_followed(wh, hook, tmp_path):
    elsewhere = WebhookServer()
    try:
        hook.status, hook.body = 302, b""
        hook.headers["Location"] = elsewhere.url
        tools_file(tmp_path, hook.url)
        start(wh, "wh-302")
        assert orjson.loads(answered(wh)) == {"error": "webhook answered http 302 (a redirect: not followed)"}
        time.sleep(0.2)
        assert elsewhere.requests == [] and len(hook.requests) == 1
    finally:
        elsewhere.close()


def test_a_webhook_that_does_not_answer_times_out(wh, hook, tmp_path):
    hook.delay = 3.0
    tools_file(tmp_path, hook.url, timeout=0.5)
    start(wh, "wh-slow")
    started = time.monotonic()
    assert orjson.loads(answered(wh)) == {"error": "webhook timed out after 0.5 s"}
    assert time.monotonic() - started < 2.5


def test_a_webhook_that_trickles_its_answer_times_out_all_the_same(wh, hook, tmp_path):
    hook.trickle = 0.1     # each byte well within the timeout, the whole answer not
    tools_file(tmp_path, hook.url, timeout=0.5)
    start(wh, "wh-trickle")
    started = time.monotonic()
    assert orjson.loads(answered(wh)) == {"error": "webhook timed out after 0.5 s"}
    assert time.monotonic() - started < 1.5


def test_the_default_timeout_is_the_option(server, hook, tmp_path):
    h = harness(server, tmp_path, webhook_timeout="0.3")
    try:
        hook.delay = 2.0
        tools_file(tmp_path, hook.url)
        start(h, "wh-opt")
        assert orjson.loads(answered(h)) == {"error": "webhook timed out after 0.3 s"}
        assert b"X-Signature" not in hook.request()     # no secret configured: no signature
    finally:
        h.finish()


def test_a_webhook_nobody_listens_on(wh, tmp_path):
    closed = WebhookServer()
    closed.close()
    tools_file(tmp_path, closed.url)
    start(wh, "wh-refused")
    assert orjson.loads(answered(wh)) == {"error": "webhook unreachable (ConnectionRefusedError)"}


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


@pytest.mark.parametrize("ca_in_file, expected", [
    (False, {"error": "webhook's TLS certificate or handshake was refused"}),
    (True, {"status": "shipped"}),
])
def test_https_webhooks_verify_the_certificate(server, tmp_path, cert, ca_in_file, expected):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    tls = WebhookServer(ssl_context=context)
    h = harness(server, tmp_path, **({"webhook_ca_file": cert[0]} if ca_in_file else {}))
    try:
        tools_file(tmp_path, tls.url)
        # a channel variable cannot give the CA file (nor turn verification off)
        start(h, "wh-tls", openai_s2s_webhook_ca_file=cert[0], openai_s2s_tls_verify="false")
        assert orjson.loads(answered(h)) == expected
    finally:
        h.finish()
        tls.close()


def test_a_ca_file_that_cannot_be_read_is_the_calls_error_not_the_sessions(server, hook, tmp_path):
    h = harness(server, tmp_path, webhook_ca_file=str(tmp_path / "missing.pem"))
    try:
        tools_file(tmp_path, hook.url.replace("http:", "https:"))
        start(h, "wh-noca")
        assert orjson.loads(answered(h)) == {"error": "webhook unreachable (FileNotFoundError)"}
    finally:
        h.finish()


def test_a_bad_tools_file_refuses_the_session(wh, tmp_path):
    tools_file(tmp_path, "ftp://127.0.0.1/hook")
    wh.call("wh-ftp", openai_s2s_tools_file="tools.json")
    reply = wh.create("wh-ftp")
    assert reply.startswith("-ERR") and "http:// or https:// url" in reply
    assert registry.get("wh-ftp") is None


def test_the_agent_sends_the_tools_without_the_modules_keys_and_calls_the_webhook(server, hook, tmp_path):
    from test_agent_run import start_agent
    h = harness(server, tmp_path)
    try:
        tools_file(tmp_path, hook.url, timeout=2)
        call, core, runner = start_agent(h, "wh-agent", openai_s2s_tools_file="tools.json",
                                         openai_s2s_greeting="Hello")
        assert wait_until(lambda: hook.requests, 10)
        update = next(e for e in h.received() if e["type"] == "session.update")
        assert update["session"]["tools"] == [TOOL]     # no url, no timeout
        assert orjson.loads(answered(h)) == {"status": "shipped"}
        call.hangup()
        runner.join(10)
    finally:
        h.finish()


def test_split_tools_keeps_the_modules_keys_to_itself():
    api, hooks = webhooks.split_tools([{"name": "a", "url": "https://x.example/a", "timeout": 2,
                                        "parameters": {}}, {"name": "b", "type": "function"}])
    assert api == [{"name": "a", "type": "function", "parameters": {}}, {"name": "b", "type": "function"}]
    assert hooks == [webhooks.WebhookTool("a", "https://x.example/a", 2.0)]
    for bad in ({"name": "a", "url": "file:///etc/passwd"}, {"name": "a", "url": "https://x/", "timeout": 0},
                {"name": "a", "url": "https://x/", "timeout": "5"}, {"name": "a", "timeout": 3},
                {"name": "a", "url": "http://x/\r\nHost: y"}):
        with pytest.raises(webhooks.WebhookError):
            webhooks.split_tools([bad])


def test_the_agent_plan_strips_the_url(tmp_path):
    tools_file(tmp_path, "https://hooks.example/order", timeout=3)
    plan = agent.plan({"openai_s2s_tools_file": "tools.json"}.get, 8000, str(tmp_path))
    assert plan.events[0]["session"]["tools"] == [TOOL]
