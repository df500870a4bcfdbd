"""The README's agent in a real FreeSWITCH: it answers, looks an order up through a webhook, and
transfers the caller to a person when asked; and a parked call that goes on across the
service's session limit in a new session."""
import html
import time

import orjson
import pytest

from openai_s2s.tools import testswitch as realswitch
from test_realswitch import (KEY, REASON, api, channel_var, esl, new_call, server,  # noqa: F401
                             server_event, wait_event)
from webhook_server import WebhookServer

pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

DESTINATIONS = {"person": "person_desk XML default"}


def tools(url: str) -> list:
    return [{"name": "lookup_order", "description": "Look up an order by its number",
             "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                            "required": ["order"]},
             "url": url}]


def dialplan(server_url: str) -> str:
    # the README's example, with the host pointed at the local server
    return realswitch.PARK_EXTENSIONS + f"""
      <extension name="acme_agent"><condition field="destination_number" expression="^5055$">
        <action application="set" data="openai_s2s_host={server_url}"/>
        <action application="set" data="openai_s2s_instructions=You answer for ACME. Look orders up; hand the caller to a person when asked."/>
        <action application="set" data="openai_s2s_tools_file=acme_tools.json"/>
        <action application="set" data="openai_s2s_call_control=transfer_call,end_call"/>
        <action application="python" data="openai_s2s"/>
      </condition></extension>
      <extension name="person_desk"><condition field="destination_number" expression="^person_desk$">
        <action application="set" data="landed=person"/>
        <action application="park"/>
      </condition></extension>"""


@pytest.fixture(scope="module")
def hook():
    server = WebhookServer()
    server.body = b'{"order": "42", "status": "shipped yesterday"}'
    yield server
    server.close()


@pytest.fixture(scope="module")
def fs(server, hook, tmp_path_factory):
    work = tmp_path_factory.mktemp("fs-agent")
    files = work / "agent-files"
    files.mkdir()
    (files / "acme_tools.json").write_text(orjson.dumps(tools(hook.url)).decode())
    switch = realswitch.RealSwitch(work, dialplan(server.url), env={"OPENAI_API_KEY": KEY})
    switch.write_conf()
    switch.set_module_params(instructions_dir=str(files),
                             transfer_destinations=html.escape(orjson.dumps(DESTINATIONS).decode()))
    switch.start(write_conf=False)
    switch.wait_for_api()
    yield switch
    if switch.alive():
        switch.stop()


def outputs(conn):
    return [e["item"]["output"] for e in list(conn.received) if e["type"] == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"]


def test_the_readme_agent_looks_an_order_up_and_hands_the_caller_to_a_person(fs, esl, server, hook):
    mark = len(server.connections)
    a, b, _ = new_call(fs, esl, "acme", "5055")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    # the greeting's response calls the first tool: the webhook answers, the model hears it
    assert server.wait_for(lambda: outputs(conn), 15), [e["type"] for e in conn.received]
    assert orjson.loads(outputs(conn)[0]) == {"order": "42", "status": "shipped yesterday"}
    request = hook.requests[0].decode()
    body = orjson.loads(request.partition("\r\n\r\n")[2])
    assert body["name"] == "lookup_order" and body["uuid"] == b and "arguments" in body
    assert KEY not in request
    update = [e for e in conn.received if e["type"] == "session.update"][0]
    declared = {t["name"] for t in update["session"]["tools"]}
    assert declared == {"lookup_order", "transfer_call", "end_call"}
    assert all("url" not in t for t in update["session"]["tools"])       # the model never sees it
    assert server.wait_for(lambda: len([e for e in conn.sent if e["type"] == "response.done"]) >= 2, 15)
    # the caller asks for a person: the model calls transfer_call, the call lands on the desk
    ask = {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": 'call transfer_call {"destination": "person"}'}]}}
    assert api(esl, f"uuid_openai_s2s {b} client.event {orjson.dumps(ask).decode()}").startswith("+OK")
    assert api(esl, f'uuid_openai_s2s {b} client.event {{"type":"response.create"}}').startswith("+OK")
    assert channel_var(esl, b, "landed", timeout=20) == "person"
    api(esl, f"uuid_kill {a}")


def test_a_parked_call_goes_on_across_the_session_limit(fs, esl, server):
    a, b, _ = new_call(fs, esl, "long", "park_unicast")
    for name, value in (("session_limit", "4"), ("expiry_warning", "3")):
        api(esl, f"uuid_setvar {b} openai_s2s_{name} {value}")
    mark = len(server.connections)
    server.set_fault("expire_after:4")     # the server would end the first session at 4 s
    try:
        assert api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}").startswith("+OK")
        assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
        assert server.wait_for(lambda: len(server.connections) > mark)
    finally:
        server.set_fault(None)
    update = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}}}}}
    assert api(esl, f"uuid_openai_s2s {b} client.event {orjson.dumps(update).decode()}").startswith("+OK")
    reconnect = wait_event(esl, "openai_s2s::reconnect", lambda e: e.get("Unique-ID") == b, timeout=10)
    assert reconnect is not None and orjson.loads(reconnect["_body"])["reason"] == "session limit"
    assert server.wait_for(lambda: len(server.connections) > mark + 1, 5)
    second = server.connections[mark + 1]
    assert server.wait_for(lambda: any(e["type"] == "session.update" for e in second.received), 5)
    # the caller is heard by the new session
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
    assert server.wait_for(lambda: len([e for e in second.received
                                        if e["type"] == "input_audio_buffer.append"]) > 10, 10)
    time.sleep(1.0)     # past the first session's expiry: nothing ended the call
    status = orjson.loads(api(esl, f"uuid_openai_s2s {b} status")[4:])
    assert status["state"] == "connected" and status["counters"]["reconnects"] == 1
    assert not [e for e in esl.events if e.get("Unique-ID") == b
                and e.get("Event-Subclass") == "openai_s2s::disconnect"]
    api(esl, f"uuid_openai_s2s {b} session.delete")
    api(esl, f"uuid_kill {a}")
