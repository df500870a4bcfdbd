"""The caller's digits and the built-in call control in a real FreeSWITCH: digits sent on the
caller leg reach the server as an item (parked on unicast, on a media bug, and the agent on a
media bug); end_call hangs up after the goodbye played; transfer_call lands on an allowed
extension and refuses another; send_dtmf reaches the caller leg."""
import html
import time

import orjson
import pytest

from openai_s2s.tools import testswitch as realswitch
from engine_harness import dominant_freq, loud
from test_realswitch import (KEY, REASON, api, channel_var, esl, new_call, recorded,  # noqa: F401
                             server, server_event, wait_event)

pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

DESTINATIONS = {"front": "xfer_target XML default"}


def dialplan(server_url: str) -> str:
    agent = (f'<action application="set" data="openai_s2s_host={server_url}"/>'
             '<action application="set" data="openai_s2s_instructions=The call control test agent."/>')
    return realswitch.PARK_EXTENSIONS + f"""
      <extension name="agent_end"><condition field="destination_number" expression="^agent_end$">
        {agent}
        <action application="set" data="openai_s2s_call_control=end_call"/>
        <action application="set" data="openai_s2s_greeting=Say goodbye."/>
        <action application="python" data="openai_s2s"/>
        <action application="set" data="after_agent=reached"/>
        <action application="park"/>
      </condition></extension>
      <extension name="agent_xfer"><condition field="destination_number" expression="^agent_xfer$">
        {agent}
        <action application="set" data="openai_s2s_call_control=transfer_call,send_dtmf"/>
        <action application="set" data="openai_s2s_greeting=none"/>
        <action application="python" data="openai_s2s"/>
        <action application="set" data="after_agent=reached"/>
        <action application="park"/>
      </condition></extension>
      <extension name="agent_bug"><condition field="destination_number" expression="^agent_bug$">
        {agent}
        <action application="set" data="openai_s2s_media=bug"/>
        <action application="set" data="openai_s2s_greeting=none"/>
        <action application="python" data="openai_s2s"/>
      </condition></extension>
      <extension name="xfer_target"><condition field="destination_number" expression="^xfer_target$">
        <action application="set" data="landed=yes"/>
        <action application="park"/>
      </condition></extension>"""


@pytest.fixture(scope="module")
def fs(server, tmp_path_factory):
    switch = realswitch.RealSwitch(tmp_path_factory.mktemp("fs-cc"), dialplan(server.url),
                                   env={"OPENAI_API_KEY": KEY})
    switch.write_conf()
    switch.set_module_params(transfer_destinations=html.escape(orjson.dumps(DESTINATIONS).decode()))
    switch.start(write_conf=False)
    switch.wait_for_api()
    yield switch
    if switch.alive():
        switch.stop()


def texts(conn):
    return [c.get("text") for e in list(conn.received) if e["type"] == "conversation.item.create"
            and e["item"].get("type") == "message" for c in e["item"].get("content", [])]


def outputs(conn):
    return [e["item"]["output"] for e in list(conn.received) if e["type"] == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"]


def dones(conn):
    return len([e for e in list(conn.sent) if e["type"] == "response.done"])


def say(esl, uuid, text):
    item = {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}
    assert api(esl, f"uuid_openai_s2s {uuid} client.event {orjson.dumps(item).decode()}").startswith("+OK")
    assert api(esl, f'uuid_openai_s2s {uuid} client.event {{"type":"response.create"}}').startswith("+OK")


def control_events(esl, uuid):
    return [orjson.loads(e["_body"]) for e in list(esl.events) if e.get("Unique-ID") == uuid
            and e.get("Event-Subclass") == "openai_s2s::server_event"
            and orjson.loads(e["_body"]).get("type") == "call_control"]


@pytest.mark.parametrize("extension", ["park_unicast", "park"])
def test_digits_on_the_caller_leg_reach_the_server_as_an_item(fs, esl, server, extension):
    a, b, _ = new_call(fs, esl, f"dtmf-{extension}", extension)
    api(esl, f"uuid_setvar {b} openai_s2s_dtmf true")
    mark = len(server.connections)
    assert api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}").startswith("+OK")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    api(esl, f'uuid_openai_s2s {b} client.event {{"type":"session.update","session":{{"type":"realtime"}}}}')
    assert server_event(esl, b, "session.updated")
    assert api(esl, f"uuid_send_dtmf {a} 123#").startswith("+OK")
    assert server.wait_for(lambda: texts(conn) == ["The caller pressed 1 2 3 #"], 10), texts(conn)
    received = server_event(esl, b, "dtmf.received")
    assert received is not None and orjson.loads(received["_body"])["digits"] == "123#"
    assert server.wait_for(lambda: any(e["type"] == "response.create" for e in list(conn.received)), 5)
    assert session_media(esl, b) == ("unicast" if extension == "park_unicast" else "bug")
    api(esl, f"uuid_openai_s2s {b} session.delete")
    api(esl, f"uuid_kill {a}")


def session_media(esl, uuid):
    return orjson.loads(api(esl, f"uuid_openai_s2s {uuid} status")[4:])["media"]["path"]


def test_the_agent_on_a_media_bug_hears_digits(fs, esl, server):
    mark = len(server.connections)
    a, b, _ = new_call(fs, esl, "dtmf-agent", "agent_bug")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert server_event(esl, b, "session.updated")
    assert session_media(esl, b) == "bug"
    api(esl, f"uuid_send_dtmf {a} 42")
    assert server.wait_for(lambda: texts(conn) == ["The caller pressed 4 2"], 10), texts(conn)
    api(esl, f"uuid_kill {a}")
    assert wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)


def test_end_call_hangs_up_after_the_goodbye_played(fs, esl, server):
    mark = len(server.connections)
    a, b, record = new_call(fs, esl, "end-call", "agent_end")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert server.wait_for(lambda: [e for e in list(conn.received) if e["type"] == "session.update"], 5)
    update = [e for e in list(conn.received) if e["type"] == "session.update"][0]
    assert [t["name"] for t in update["session"]["tools"]] == ["end_call"]
    # the greeting's response calls end_call; the module answers, the model says goodbye (a tone)
    assert server.wait_for(lambda: outputs(conn) == ["ok"], 10)
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b, timeout=20)
    # the agent's own session.delete when park returns at hangup, or the module's hangup seen first
    assert disconnect is not None and orjson.loads(disconnect["_body"])["reason"] in ("hangup", "session.delete")
    events = [orjson.loads(e["_body"]).get("type") for e in list(esl.events) if e.get("Unique-ID") == b
              and e.get("Event-Subclass") == "openai_s2s::server_event"]
    assert events.index("output_audio.playback_stopped") < events.index("call_control")
    assert control_events(esl, b)[0]["result"] == "hangup"
    deadline = time.monotonic() + 5
    while "NORMAL_CLEARING" not in hangup_line(fs, b) and time.monotonic() < deadline:
        esl.wait(0.1)
    assert "NORMAL_CLEARING" in hangup_line(fs, b)
    assert channel_var(esl, b, "after_agent", timeout=0.5) != "reached"   # hung up, not returned
    esl.wait(0.5)
    goodbye = loud(recorded(record))
    assert len(goodbye) > 8000 * 2 * 0.5, "the caller did not hear the goodbye"
    assert abs(dominant_freq(goodbye, 8000) - 440) < 8


def hangup_line(fs, uuid):
    return "\n".join(line for line in fs.log_text().splitlines() if uuid in line and "Hangup" in line)


def test_transfer_refuses_another_destination_then_lands_on_the_allowed_one(fs, esl, server):
    mark = len(server.connections)
    a, b, _ = new_call(fs, esl, "xfer", "agent_xfer")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert server_event(esl, b, "session.updated")
    say(esl, b, 'call transfer_call {"destination": "park"}')       # an extension, but not allowed
    assert server.wait_for(lambda: outputs(conn), 10)
    assert orjson.loads(outputs(conn)[0]) == {"error": "no such destination: park; allowed: front"}
    assert server.wait_for(lambda: dones(conn) == 2, 10)   # the call, and the reply to its output
    esl.wait(0.5)
    assert channel_var(esl, b, "landed", timeout=0.2) != "yes"
    assert api(esl, f"uuid_openai_s2s {b} status").startswith("+OK")
    say(esl, b, 'call send_dtmf {"digits": "7#"}')
    assert server.wait_for(lambda: len(outputs(conn)) == 2, 10) and outputs(conn)[1] == "ok"
    assert server.wait_for(lambda: dones(conn) == 4, 10)
    say(esl, b, 'call transfer_call {"destination": "front"}')
    assert channel_var(esl, b, "landed", timeout=20) == "yes"
    assert outputs(conn)[2] == "ok"
    assert [(e["tool"], e["result"]) for e in control_events(esl, b)] == [
        ("transfer_call", "refused"), ("send_dtmf", "sent"), ("transfer_call", "transferred")]
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b, timeout=10)
    assert disconnect is not None
    esl.wait(0.5)
    assert channel_var(esl, b, "after_agent", timeout=0.2) != "reached"   # the dialplan went on elsewhere
    assert api(esl, f"uuid_openai_s2s {b} status").startswith("-ERR")
    assert "xfer_target" in api(esl, f"uuid_getvar {b} destination_number")
    api(esl, f"uuid_kill {a}")
