"""GPT-Live end to end: the command surface, the fake switch, and the local server speaking GPT-Live
at /v1/live/sessions. Every event both ways is checked against the openai package's
``types.live`` models when each test finishes (engine_harness)."""
from __future__ import annotations

import base64
import time

import orjson

from openai_s2s.call import registry
from engine_harness import dominant_freq, loud, silence, tone, wait_until

LIVE_PATH = "v1/live/sessions"
UPDATE = {"type": "session.update", "session": {
    "type": "realtime", "instructions": "You are a test.",
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad"}},
              "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}}}}


def live_audio(h, index: int = -1) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in h.received(index)
                    if e.get("type") == "session.input_audio.append")


def kinds(h, index: int = -1):
    return [e.get("type") for e in h.received(index)]


def commands(h, index: int = -1):
    """What went up but caller audio."""
    return [k for k in kinds(h, index) if k != "session.input_audio.append"]


def talk(call, freq=440, seconds=0.6, pause=0.8):
    call.say(tone(freq, call.rate, seconds) + silence(call.rate, pause))


def start(h, uuid: str, update=UPDATE, **variables):
    call = h.call(uuid, **variables)
    reply = h.create(uuid, path=LIVE_PATH)
    assert reply.startswith("+OK connecting to ws://127.0.0.1:") and reply.endswith("(live)"), reply
    headers, body = h.connected(uuid)
    assert orjson.loads(body)["protocol"] == "live"
    assert h.send(uuid, update).startswith("+OK")
    assert h.wait_server_event(uuid, "session.started")
    return call


def test_a_live_call_streams_both_ways_after_session_started(h):
    call = h.call("u-live")
    h.create("u-live", path=LIVE_PATH)
    h.connected("u-live")
    talk(call)
    time.sleep(0.5)
    assert live_audio(h) == b"" and h.received() == [], "nothing goes up before the session starts"
    assert h.send("u-live", UPDATE).startswith("+OK")
    assert h.wait_server_event("u-live", "session.started")
    first = h.received()[0]
    assert first["type"] == "session.start" and first["session"]["model"].startswith("gpt-live")
    assert kinds(h).index("session.start") < kinds(h).index("session.input_audio.append") \
        if "session.input_audio.append" in kinds(h) else True
    talk(call, freq=440)
    assert wait_until(lambda: len(loud(live_audio(h))) > 24000 * 0.4)
    assert abs(dominant_freq(loud(live_audio(h)), 24000) - 440) < 5
    assert not any(k.startswith("input_audio_buffer") for k in kinds(h))
    # the server's echo, paced by its mixer, is what the caller hears
    assert h.wait_server_event("u-live", "output_audio.playback_started", timeout=15)
    stopped = h.wait_server_event("u-live", "output_audio.playback_stopped", timeout=15)
    assert orjson.loads(stopped[1])["completion_reason"] == "completed"
    heard = loud(bytes(call.heard))
    assert len(heard) > 8000 * 2 * 0.3 and abs(dominant_freq(heard, 8000) - 440) < 8
    status = orjson.loads(h.api("u-live status")[4:])
    assert status["protocol"] == "live" and status["server_interrupts"] is True
    assert status["counters"]["underruns"] <= 2, "a quiet model is no underrun"
    assert h.wait_server_event("u-live", "session.input_transcript.delta")
    assert h.api("u-live session.delete") == "+OK session deleted"
    # GPT-Live is asked to finalize the session, and says it did, before the socket closes
    assert kinds(h)[-1] == "session.close"
    closed = h.server_events("u-live", "session.closed")
    assert closed and closed[0]["reason"] == "close_requested"
    h.finish()


def test_what_live_cannot_do_is_refused_by_name(h):
    start(h, "u-live-err")
    sent = commands(h)
    for event, words in (({"type": "response.cancel"}, "response.cancel: GPT-Live has no response.cancel"),
                         ({"type": "conversation.item.truncate", "item_id": "i", "content_index": 0,
                           "audio_end_ms": 0}, "conversation.item.truncate"),
                         ({"type": "response.create"}, "response.create: GPT-Live decides")):
        reply = h.send("u-live-err", event)
        assert reply.startswith("-ERR ") and words in reply, reply
    time.sleep(0.3)
    assert commands(h) == sent, "a refused event changes nothing and sends nothing"
    # the ones that map do go, as GPT-Live's own
    assert h.send("u-live-err", {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "My order is 42."}]}}
    ).startswith("+OK")
    assert h.server.wait_for(lambda: "session.instructions.append" in kinds(h))
    assert h.wait_server_event("u-live-err", "session.instructions.appended")
    h.api("u-live-err session.delete")
    h.finish()


def test_the_caller_taking_the_turn_silences_the_model_within_a_frame(h):
    h.server.reply = "tone"
    call = start(h, "u-live-barge")
    talk(call, seconds=0.4, pause=0.7)
    assert h.wait_server_event("u-live-barge", "output_audio.playback_started", timeout=15)
    time.sleep(0.4)
    talk(call, freq=300, seconds=0.8, pause=0.2)   # over the model
    interrupted = h.switch.wait_event(
        "openai_s2s::server_event", lambda hd, b: hd.get("Unique-ID") == "u-live-barge"
        and orjson.loads(b).get("completion_reason") == "interrupted", 15)
    assert interrupted is not None
    status = orjson.loads(h.api("u-live-barge status")[4:])
    assert status["counters"]["barge_ins"] >= 1
    assert status["counters"]["frames_after_barge_in"] <= 1
    assert not {"response.cancel", "conversation.item.truncate"} & set(kinds(h)), \
        "GPT-Live has neither: nothing of the kind goes up"
    h.api("u-live-barge session.delete")
    h.finish()


def test_mute_and_pause_use_the_apis_own_mute(h):
    call = start(h, "u-live-mute")
    assert h.api("u-live-mute mute user").startswith("+OK")
    assert h.wait_server_event("u-live-mute", "session.input_audio.muted")
    before = len(live_audio(h))
    talk(call, seconds=0.3, pause=0.1)
    assert wait_until(lambda: len(live_audio(h)) > before), "the caller's audio still goes up while muted"
    assert h.api("u-live-mute unmute user").startswith("+OK")
    assert h.wait_server_event("u-live-mute", "session.input_audio.unmuted")
    assert h.api("u-live-mute pause").startswith("+OK")
    assert h.server.wait_for(lambda: kinds(h).count("session.input_audio.mute") == 2)
    assert h.api("u-live-mute resume").startswith("+OK")
    assert h.server.wait_for(lambda: kinds(h).count("session.input_audio.unmute") == 2)
    h.api("u-live-mute session.delete")
    h.finish()


def test_the_servers_digits_are_played_to_the_caller(h):
    call = start(h, "u-live-dtmf")
    h.server.connections[-1].send_dtmf("7")
    assert wait_until(lambda: call.dtmf_sent == ["7"])
    assert h.wait_server_event("u-live-dtmf", "dtmf.played")
    h.server.connections[-1].inject("transport.dtmf.send", event="7; hangup")
    time.sleep(0.3)
    assert call.dtmf_sent == ["7"], "what the switch cannot play is never passed on"
    h.api("u-live-dtmf session.delete")
    h.finish()


def test_the_callers_digits_reach_the_model_as_context(h):
    call = start(h, "u-live-keys", openai_s2s_dtmf="true", openai_s2s_dtmf_pause_ms="300")
    call.press("12#")
    assert h.server.wait_for(lambda: any(e.get("type") == "session.instructions.append"
                                         and "pressed 1 2 #" in e.get("content", "") for e in h.received()), 10)
    assert "response.create" not in kinds(h), "GPT-Live decides itself when to answer"
    h.api("u-live-keys session.delete")
    h.finish()


def test_a_tool_call_from_the_responses_backend_is_answered_by_the_module(h):
    h.server.reply = "delegate"
    update = orjson.loads(orjson.dumps(UPDATE))
    update["session"]["tools"] = [{"type": "function", "name": "send_dtmf", "description": "digits",
                                   "parameters": {"type": "object", "properties": {"digits": {"type": "string"}}}}]
    call = start(h, "u-live-tool", update=update, openai_s2s_call_control="send_dtmf")
    first = h.received()[0]
    assert first["session"]["delegation"]["type"] == "responses"
    talk(call, seconds=0.6, pause=0.9)
    assert h.server.wait_for(lambda: "response.item.create" in kinds(h), 20)
    output = next(e for e in h.received() if e["type"] == "response.item.create")
    assert output["item"]["type"] == "function_call_output" and output["item"]["call_id"]
    assert h.server.wait_for(lambda: "response.create" in kinds(h), 5)
    h.api("u-live-tool session.delete")
    h.finish()


def test_a_live_call_goes_on_in_a_new_session_before_the_limit_with_the_call_so_far(h):
    call = start(h, "u-live-exp", openai_s2s_session_limit="8", openai_s2s_expiry_warning="5")
    talk(call)
    assert h.wait_server_event("u-live-exp", "session.output_transcript.delta", timeout=15)
    assert h.switch.wait_event("openai_s2s::reconnect", lambda hd, b: hd.get("Unique-ID") == "u-live-exp", 15)
    assert h.server.wait_for(lambda: len(h.server.connections) == 2 and h.received(1))
    restart = h.received(1)[0]
    assert restart["type"] == "session.start"
    assert restart["session"].get("input"), "what was said goes into the new session's history"
    assert wait_until(lambda: registry.get("u-live-exp") is not None
                      and orjson.loads(h.api("u-live-exp status")[4:])["counters"]["reconnects"] == 1)
    assert not h.switch.named("openai_s2s::disconnect")
    h.api("u-live-exp session.delete")
    h.finish()
