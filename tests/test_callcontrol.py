"""Built-in call control: end_call hangs up after the goodbye has played, transfer_call goes
only to the operator's named destinations, send_dtmf plays valid digits; each fires a
call_control event. An ESL session gets them only when the call opts in."""
from xml.sax.saxutils import quoteattr

import orjson
import pytest

from engine_harness import Harness, wait_until
from openai_s2s.call import registry
from openai_s2s.call.callcontrol import declarations
from openai_s2s.control import config

DESTINATIONS = {"sales": "1000 XML default", "support": {"extension": "2000"}}
CONFIG = ('<configuration name="openai_s2s.conf"><settings><param name="transfer-destinations" '
          f'value={quoteattr(orjson.dumps(DESTINATIONS).decode())}/></settings></configuration>')
PARSED = {"sales": ("1000", "XML", "default"), "support": ("2000", None, None)}


@pytest.fixture
def hc(server):
    harness = Harness(server, CONFIG)
    yield harness
    harness.finish()


def _start(h, uuid, names, **variables):
    call = h.call(uuid, openai_s2s_call_control=",".join(names), **variables)
    h.create(uuid)
    h.connected(uuid)
    h.send(uuid, {"type": "session.update", "session": {
        "type": "realtime", "tools": declarations(names, PARSED), "tool_choice": "auto"}})
    h.wait_server_event(uuid, "session.updated")
    return call


def _say(h, uuid, text):
    h.send(uuid, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    h.send(uuid, {"type": "response.create"})


def _outputs(h):
    return [e["item"]["output"] for e in h.received() if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"]


def _control(h, uuid):
    return [e for e in h.server_events(uuid, "call_control")]


def test_end_call_hangs_up_once_the_goodbye_has_played(hc):
    call = _start(hc, "cc-end", ["end_call"])
    hc.send("cc-end", {"type": "response.create"})      # the server calls the first tool
    assert wait_until(lambda: _outputs(hc) == ["ok"])
    assert wait_until(lambda: call.hangup_causes == ["NORMAL_CLEARING"], 15)
    kinds = [orjson.loads(b).get("type") for n, h, b in hc.switch.events if n == "openai_s2s::server_event"]
    # the goodbye (the reply to the output) played out before the hangup
    assert kinds.index("output_audio.playback_stopped") < kinds.index("call_control")
    assert any(frame for frame in call.heard_frames if frame)
    assert _control(hc, "cc-end")[0]["tool"] == "end_call" and _control(hc, "cc-end")[0]["result"] == "hangup"
    disconnect = hc.switch.wait_event("openai_s2s::disconnect", lambda h, b: h.get("Unique-ID") == "cc-end")
    assert orjson.loads(disconnect[1])["reason"] == "hangup"
    assert any("call control end_call: hangup" in line for line in hc.logs)


def test_transfer_goes_to_a_named_destination_after_the_reply(hc):
    call = _start(hc, "cc-xfer", ["transfer_call"])
    _say(hc, "cc-xfer", 'Put me through. call transfer_call {"destination": "sales"}')
    assert wait_until(lambda: call.transfers == [("1000", "XML", "default")], 15)
    assert _outputs(hc) == ["ok"]
    assert hc.server_events("cc-xfer", "output_audio.playback_stopped")
    event = _control(hc, "cc-xfer")[-1]
    assert (event["tool"], event["result"], event["destination"]) == ("transfer_call", "transferred", "sales")
    disconnect = hc.switch.wait_event("openai_s2s::disconnect", lambda h, b: h.get("Unique-ID") == "cc-xfer")
    assert orjson.loads(disconnect[1])["reason"] == "transfer"


def test_transfer_anywhere_else_is_refused_and_nothing_happens(hc):
    call = _start(hc, "cc-refuse", ["transfer_call"])
    _say(hc, "cc-refuse", 'call transfer_call {"destination": "9001 XML public"}')
    assert wait_until(lambda: _outputs(hc))
    assert orjson.loads(_outputs(hc)[0]) == {
        "error": "no such destination: 9001 XML public; allowed: sales, support"}
    assert hc.wait_server_event("cc-refuse", "output_audio.playback_stopped")
    assert call.transfers == [] and registry.get("cc-refuse") is not None
    assert _control(hc, "cc-refuse")[0]["result"] == "refused"


def test_send_dtmf_plays_valid_digits_only(hc):
    call = _start(hc, "cc-dtmf", ["send_dtmf"])
    _say(hc, "cc-dtmf", 'call send_dtmf {"digits": "12#"}')
    assert wait_until(lambda: call.dtmf_sent == ["12#"])
    assert wait_until(lambda: len(hc.server_events("cc-dtmf", "response.done")) == 2)
    _say(hc, "cc-dtmf", 'call send_dtmf {"digits": "1; uuid_kill all"}')
    assert wait_until(lambda: len(_outputs(hc)) == 2)
    assert "error" in orjson.loads(_outputs(hc)[1]) and call.dtmf_sent == ["12#"]
    assert [e["result"] for e in _control(hc, "cc-dtmf")] == ["sent", "refused"]


def test_without_opting_in_the_tools_stay_the_applications(hc):
    call = hc.call("cc-esl")
    hc.create("cc-esl")
    hc.connected("cc-esl")
    hc.send("cc-esl", {"type": "session.update", "session": {
        "type": "realtime", "tools": declarations(["end_call"], {}), "tool_choice": "auto"}})
    hc.wait_server_event("cc-esl", "session.updated")
    hc.send("cc-esl", {"type": "response.create"})
    assert hc.wait_server_event("cc-esl", "response.output_item.done")
    assert hc.wait_server_event("cc-esl", "response.done")
    assert _outputs(hc) == [] and call.hangup_causes == []


def test_the_options_parse_and_refuse():
    settings = config.Settings({"transfer_destinations": orjson.dumps(DESTINATIONS).decode()})
    assert settings.values["transfer_destinations"] == PARSED
    for bad in ('{"a b": "1000"}', '{"x": "1 2 3 4"}', '{"x": {"number": "1"}}', '[1]', '{"x": ""}'):
        assert "default kept" in config.Settings({"transfer_destinations": bad}).warnings[0]
    get = {"openai_s2s_call_control": "end_call, send_dtmf", "openai_s2s_transfer_destinations": "{}"}.get
    options = config.Settings().for_call(get)
    assert options["call_control"] == ("end_call", "send_dtmf")
    assert options["transfer_destinations"] == {}          # the config file's alone
    with pytest.raises(config.ConfigError, match="dial_anything"):
        config.Settings().for_call({"openai_s2s_call_control": "dial_anything"}.get)
