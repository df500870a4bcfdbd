"""The dialplan agent's plan: channel variables -> the commands it will run."""
import pytest

from openai_s2s.control.agent import AgentError, plan
from realtime_models import validate_client_event


def test_defaults_on_an_8k_channel_use_g711_and_greet():
    p = plan({"openai_s2s_instructions": "Be brief."}.get, 8000, None)
    assert p.create_args == "api.openai.com v1/realtime?model=gpt-realtime-2.1 bearer"
    update, greet = p.events
    assert update["session"]["instructions"] == "Be brief."
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert greet["type"] == "response.create"
    for event in p.events:
        validate_client_event(event, "ga")


def test_everything_from_variables_and_files(tmp_path):
    (tmp_path / "agent.txt").write_text("From a file.")
    (tmp_path / "tools.json").write_text('[{"name": "lookup", "description": "d", '
                                         '"parameters": {"type": "object", "properties": {}}}]')
    variables = {"openai_s2s_host": "ws://127.0.0.1:9000", "openai_s2s_model": "gpt-realtime-mini",
                 "openai_s2s_auth": "api-key", "openai_s2s_voice": "cedar",
                 "openai_s2s_instructions_file": "agent.txt", "openai_s2s_tools_file": "tools.json",
                 "openai_s2s_greeting": "none", "openai_s2s_audio_format": "pcm"}
    p = plan(variables.get, 16000, str(tmp_path))
    assert p.create_args == "ws://127.0.0.1:9000 v1/realtime?model=gpt-realtime-mini api-key"
    assert len(p.events) == 1
    session = p.events[0]["session"]
    assert session["instructions"] == "From a file."
    assert session["tools"][0] == {"name": "lookup", "type": "function", "description": "d",
                                   "parameters": {"type": "object", "properties": {}}}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar"}
    validate_client_event(p.events[0], "ga")


@pytest.mark.parametrize("variables,message", [
    ({"openai_s2s_audio_format": "mp3"}, "audio_format"),
    ({"openai_s2s_instructions_file": "../x"}, "outside"),
    ({"openai_s2s_tools_file": "bad.json"}, "not JSON"),
    ({"openai_s2s_tools_file": "notlist.json"}, "list of tools"),
])
def test_bad_variables_are_refused(tmp_path, variables, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "notlist.json").write_text('{"name": "x"}')
    with pytest.raises(AgentError, match=message):
        plan(variables.get, 8000, str(tmp_path))


def test_call_control_is_declared_to_the_model_with_the_destinations():
    variables = {"openai_s2s_call_control": "transfer_call,end_call"}
    p = plan(variables.get, 8000, None, {"sales": ("1000", None, None), "billing": ("2000", "XML", "x")})
    tools = p.events[0]["session"]["tools"]
    assert [t["name"] for t in tools] == ["end_call", "transfer_call"]
    assert tools[1]["parameters"]["properties"]["destination"]["enum"] == ["billing", "sales"]
    assert p.events[0]["session"]["tool_choice"] == "auto"
    validate_client_event(p.events[0], "ga")
    with pytest.raises(AgentError, match="call_control"):
        plan({"openai_s2s_call_control": "originate"}.get, 8000, None)
