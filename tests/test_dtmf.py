"""The caller's digits reach the model: batched until # or a pause, sent as a user message and
answered by one response.create once no response is in progress; opt-in for ESL sessions."""
import orjson

from engine_harness import wait_until
from openai_s2s.call.dtmf import DtmfBatcher, render
from test_agent_run import start_agent

UPDATE = {"type": "session.update", "session": {"type": "realtime"}}


def test_a_batch_ends_at_hash_or_after_a_pause():
    batcher = DtmfBatcher(pause=1.5)
    for digit in "12#4x":
        batcher.push(digit)
    assert batcher.poll(10.0) == ["12#"]          # x is no digit
    assert batcher.pending == "4"
    assert batcher.poll(11.0) == []
    batcher.push("5")
    assert batcher.poll(11.2) == []
    assert batcher.poll(12.69) == []
    assert batcher.poll(12.7) == ["45"]            # 1.5 s after the last digit
    assert render("The caller pressed {digits}", "123#") == "The caller pressed 1 2 3 #"


def _texts(h):
    return [c["text"] for e in h.received() if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "message" for c in e["item"]["content"]]


def _start(h, uuid, **variables):
    call = h.call(uuid, **variables)
    h.create(uuid)
    h.connected(uuid)
    h.send(uuid, UPDATE)
    h.wait_server_event(uuid, "session.updated")
    return call


def test_digits_go_to_the_model_as_a_message_then_a_response(h):
    call = _start(h, "d-on", openai_s2s_dtmf="true", openai_s2s_dtmf_pause_ms="300")
    call.press("12#")
    assert wait_until(lambda: _texts(h) == ["The caller pressed 1 2 #"])
    event = h.wait_server_event("d-on", "dtmf.received")
    assert event is not None and orjson.loads(event[1]) == {"type": "dtmf.received", "digits": "12#"}
    assert h.wait_server_event("d-on", "response.done")
    kinds = [e["type"] for e in h.received()]
    assert kinds.index("conversation.item.create") < kinds.index("response.create")
    call.press("7")                                  # no #: the pause ends the batch
    assert wait_until(lambda: len(_texts(h)) == 2)
    assert _texts(h)[1] == "The caller pressed 7"
    assert wait_until(lambda: sum(e["type"] == "response.create" for e in h.received()) == 2)


def test_digits_during_a_response_wait_for_its_end(h):
    call = _start(h, "d-busy", openai_s2s_dtmf="true", openai_s2s_dtmf_template="Keys: {digits}.")
    h.send("d-busy", {"type": "response.create"})
    assert h.wait_server_event("d-busy", "response.created")
    call.press("9#")
    assert wait_until(lambda: _texts(h) == ["Keys: 9 #."])
    assert wait_until(lambda: len(h.server_events("d-busy", "response.done")) == 2)
    assert h.server_events("d-busy", "error") == []   # no response.create while one was active


def test_an_esl_session_hears_no_digits_unless_it_opts_in(h):
    call = _start(h, "d-off")
    call.press("12#")
    h.send("d-off", {"type": "response.create"})
    assert h.wait_server_event("d-off", "response.done")
    assert _texts(h) == [] and h.server_events("d-off", "dtmf.received") == []


def test_the_agent_hears_digits_by_default(h):
    call, core, runner = start_agent(h, "d-agent")
    assert h.connected("d-agent")
    assert wait_until(lambda: any(e["type"] == "session.update" for e in h.received()))
    assert core.set.get("openai_s2s_dtmf") == "true"
    call.press("5#")
    assert wait_until(lambda: _texts(h) == ["The caller pressed 5 #"])
    call.hangup()
    runner.join(10)
