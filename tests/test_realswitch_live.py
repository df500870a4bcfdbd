"""GPT-Live inside a real FreeSWITCH: an ESL-parked call with audio both ways, the caller taking
the turn, the server's digits reaching the caller leg, and the dialplan agent on GPT-Live."""
import orjson
import pytest

from openai_s2s.tools import testswitch as realswitch
from engine_harness import dominant_freq, loud
from test_realswitch import (KEY, REASON, api, esl, new_call, no_leftovers, recorded, server,  # noqa: F401
                             server_event, session_status, wait_event)

pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

UPDATE = {"type": "session.update", "session": {
    "type": "realtime", "instructions": "You are the real-switch GPT-Live test.",
    "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}}}


def live_audio(conn) -> bytes:
    import base64
    return b"".join(base64.b64decode(e["audio"]) for e in list(conn.received)
                    if e.get("type") == "session.input_audio.append")


def playbacks(esl, uuid: str, kind: str) -> int:
    return sum(1 for e in list(esl.events) if e.get("Unique-ID") == uuid
               and e.get("Event-Subclass") == "openai_s2s::server_event"
               and orjson.loads(e.get("_body", "{}")).get("type") == kind)


def wait_count(esl, predicate, timeout: float = 15.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        esl.wait(0.05)
    return predicate()


def dialplan(server_url: str) -> str:
    return realswitch.PARK_EXTENSIONS + f"""
      <extension name="live_agent"><condition field="destination_number" expression="^live_agent$">
        <action application="set" data="openai_s2s_host={server_url}"/>
        <action application="set" data="openai_s2s_protocol=live"/>
        <action application="set" data="openai_s2s_instructions=You are the GPT-Live test agent."/>
        <action application="set" data="openai_s2s_greeting=Say hello."/>
        <action application="python" data="openai_s2s"/>
        <action application="hangup"/>
      </condition></extension>"""


@pytest.fixture(scope="module")
def fs(server, tmp_path_factory):
    switch = realswitch.RealSwitch(tmp_path_factory.mktemp("fs-live"), dialplan(server.url),
                                   env={"OPENAI_API_KEY": KEY})
    switch.start()
    switch.wait_for_api()
    yield switch
    if switch.alive():
        switch.stop()


def test_a_parked_live_call_both_ways_turn_taking_and_digits(fs, esl, server):
    esl.register_handle("DTMF", lambda event: esl.events.append(event.headers))
    esl.send("event json DTMF")
    a, b, record = new_call(fs, esl, "live", "park_unicast")
    mark = len(server.connections)
    reply = api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/live/sessions bearer {KEY}")
    assert reply.startswith("+OK connecting") and reply.endswith("(live)"), reply
    connect = wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert connect is not None and orjson.loads(connect["_body"])["protocol"] == "live"
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert fs.cli(f"uuid_openai_s2s {b} client.event {orjson.dumps(UPDATE).decode()}").startswith("+OK")
    assert server_event(esl, b, "session.started")
    start = list(conn.received)[0]
    assert start["type"] == "session.start" and start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    # the caller's tone reaches the server as that tone, G.711 at 8 kHz with no resampling
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
    assert server.wait_for(lambda: len(live_audio(conn)) > 8000 * 0.5, 10)
    assert server_event(esl, b, "session.input_transcript.delta")
    # the server's echo, paced by its mixer, reaches the caller leg
    assert server_event(esl, b, "output_audio.playback_started", timeout=15)
    stopped = server_event(esl, b, "output_audio.playback_stopped", timeout=15)
    assert orjson.loads(stopped["_body"])["completion_reason"] == "completed"
    status = session_status(esl, b)
    assert status["protocol"] == "live" and status["media"]["path"] == "unicast"
    assert status["counters"]["frames_out"] > 0
    # the caller takes the turn over a long reply: playout stops within a frame
    server.reply, server.speed = "tone", 1.5
    try:
        started = playbacks(esl, b, "output_audio.playback_started")
        api(esl, f"uuid_broadcast {a} tone_stream://%(400,0,440) aleg")
        assert wait_count(esl, lambda: playbacks(esl, b, "output_audio.playback_started") > started)
        esl.wait(0.5)
        api(esl, f"uuid_broadcast {a} tone_stream://%(700,0,300) aleg")
        interrupted = wait_event(esl, "openai_s2s::server_event", lambda e: e.get("Unique-ID") == b and
                                 orjson.loads(e["_body"]).get("completion_reason") == "interrupted", 15)
        assert interrupted is not None
        status = session_status(esl, b)
        assert status["counters"]["barge_ins"] >= 1 and status["counters"]["frames_after_barge_in"] <= 1
        assert not {"response.cancel", "conversation.item.truncate"} & {e.get("type") for e in list(conn.received)}
    finally:
        server.reply, server.speed = "echo", 4.0
    # the server asks the transport for a digit: the caller leg receives it
    conn.send_dtmf("5")
    assert server_event(esl, b, "dtmf.played")
    digit = wait_event(esl, None, lambda e: e.get("Event-Name") == "DTMF" and e.get("Unique-ID") == a, 5)
    assert digit is not None and digit.get("DTMF-Digit") == "5"
    assert fs.cli(f"uuid_openai_s2s {b} session.delete") == "+OK session deleted"
    no_leftovers(fs, esl, b)
    api(esl, f"uuid_kill {a}")
    esl.wait(0.5)
    heard = loud(recorded(record))
    assert len(heard) > 8000 * 2 * 0.3, "the caller heard no model audio"
    assert abs(dominant_freq(heard[: 8000 * 2], 8000) - 440) < 8
    assert KEY not in fs.log_text()


def test_the_dialplan_agent_on_live(fs, esl, server):
    mark = len(server.connections)
    a, b, record = new_call(fs, esl, "live-agent", "live_agent")
    connect = wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert connect is not None and orjson.loads(connect["_body"])["protocol"] == "live"
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert server_event(esl, b, "session.started")
    kinds = [e["type"] for e in list(conn.received)]
    start = list(conn.received)[0]
    assert start["type"] == "session.start" and start["session"]["model"].startswith("gpt-live")
    assert start["session"]["instructions"] == "You are the GPT-Live test agent."
    # the greeting's instructions are appended once the session has started
    assert server.wait_for(lambda: any(e.get("type") == "session.instructions.append"
                                       and e.get("content") == "Say hello." for e in list(conn.received)), 5), kinds
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
    assert server.wait_for(lambda: len(live_audio(conn)) > 8000 * 0.5, 10)
    assert server_event(esl, b, "output_audio.playback_started", timeout=15)
    assert session_status(esl, b)["media"]["path"] == "unicast"
    api(esl, f"uuid_kill {a}")
    assert wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
