"""The Realtime state machine, fed events directly: no sockets, no threads."""
import base64

import orjson
import pytest

from openai_s2s.media.formats import PCM24, PCMA, PCMU
from openai_s2s.realtime.protocol import (BETA, GA, ClientEventError, End, EndAudio, Flush, Forward, Log,
                                 OpenUplink, Play, RealtimeProtocol, Send, SetOutput,
                                 generation_for_path)
from realtime_models import validate_client_event

# The seed README's examples, exactly as an existing caller sends them (beta shape).
SEED_RESPONSE_CREATE = {
    "type": "response.create",
    "response": {"modalities": ["text", "audio"],
                 "instructions": "Please assist the user with their request.",
                 "voice": "alloy", "output_audio_format": "pcm16",
                 "temperature": 0.8, "max_output_tokens": 4096},
}
SEED_SESSION_UPDATE = {
    "type": "session.update",
    "session": {
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "threshold": 0.8,
                           "prefix_padding_ms": 300, "silence_duration_ms": 500},
        "tools": [{"name": "get_weather", "type": "function",
                   "description": "Get the weather at a given location",
                   "parameters": {"type": "object", "properties": {
                       "location": {"type": "string", "description": "Location to get the weather from"},
                       "scale": {"type": "string", "enum": ["fahrenheit", "celsius"]}},
                       "required": ["location", "scale"]}}],
        "tool_choice": "auto",
    },
}


def sent(actions):
    return [a.event for a in actions if isinstance(a, Send)]


def server(proto, **event):
    return proto.server_event(orjson.dumps(event))


@pytest.mark.parametrize("path,override,expected", [
    ("v1/realtime?model=gpt-realtime", "auto", GA),
    ("/v1/realtime?model=gpt-4o-realtime-preview-2024-10-01", "auto", GA),
    ("openai/v1/realtime?model=my-deployment", "auto", GA),
    ("openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-realtime-preview", "auto", BETA),
    ("v1/realtime?model=gpt-realtime", "beta", BETA),
])
def test_generation_from_path(path, override, expected):
    assert generation_for_path(path, override) == expected


def test_seed_examples_become_valid_ga_events():
    proto = RealtimeProtocol(GA)
    actions = proto.client_event(orjson.loads(orjson.dumps(SEED_SESSION_UPDATE)))
    update = sent(actions)[0]
    validate_client_event(update, GA)
    session = update["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert "turn_detection" not in session and "input_audio_transcription" not in session
    logs = [a.message for a in actions if isinstance(a, Log)]
    assert len(logs) == 1 and "translated" in logs[0] and "turn_detection" in logs[0]
    assert OpenUplink(PCM24) in actions

    proto.server_event(orjson.dumps({"type": "session.updated", "event_id": "e1",
                                     "session": {"type": "realtime"}}))
    create = sent(proto.client_event(orjson.loads(orjson.dumps(SEED_RESPONSE_CREATE))))[0]
    validate_client_event(create, GA)
    response = create["response"]
    assert response["output_modalities"] == ["audio"]
    assert response["audio"]["output"] == {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}}
    assert response["max_output_tokens"] == 4096 and "temperature" not in response


def test_beta_session_passes_through_untouched():
    proto = RealtimeProtocol(BETA)
    event = orjson.loads(orjson.dumps(SEED_SESSION_UPDATE))
    assert sent(proto.client_event(event))[0] == SEED_SESSION_UPDATE
    validate_client_event(SEED_SESSION_UPDATE, BETA)


def test_ga_event_is_not_rewritten():
    proto = RealtimeProtocol(GA)
    event = {"type": "session.update", "session": {"type": "realtime", "instructions": "hi",
             "audio": {"output": {"voice": "marin", "format": {"type": "audio/pcmu"}}}}}
    actions = proto.client_event(orjson.loads(orjson.dumps(event)))
    assert sent(actions)[0] == event
    assert not [a for a in actions if isinstance(a, Log)]
    assert SetOutput(PCMU) in actions and proto.output_format == PCMU


def test_formats_are_read_from_session_update():
    proto = RealtimeProtocol(GA)
    actions = proto.client_event({"type": "session.update", "session": {
        "input_audio_format": "g711_alaw", "output_audio_format": "g711_ulaw"}})
    assert proto.input_format == PCMA and proto.output_format == PCMU
    assert OpenUplink(PCMA) in actions and SetOutput(PCMU) in actions
    # a later change of input format re-opens the uplink in the new format
    again = proto.client_event({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}})
    assert OpenUplink(PCM24) in again


def test_uplink_opens_only_with_the_first_session_update():
    proto = RealtimeProtocol(GA, hold_response_create=False)
    assert not any(isinstance(a, OpenUplink) for a in proto.client_event({"type": "response.create"}))
    assert not proto.uplink_open
    actions = proto.client_event({"type": "session.update", "session": {"type": "realtime"}})
    assert proto.uplink_open
    # order matters: the update is sent before the first audio
    assert isinstance(actions[0], Send) and isinstance(actions[-1], OpenUplink)


def test_response_create_held_until_session_updated():
    proto = RealtimeProtocol(GA)
    held = proto.client_event({"type": "response.create"})
    assert not sent(held) and proto.held
    proto.client_event({"type": "session.update", "session": {"type": "realtime"}})
    released = server(proto, type="session.updated", event_id="e", session={"type": "realtime"})
    assert sent(released) == [{"type": "response.create"}]
    # after the first session.updated nothing is held any more
    assert sent(proto.client_event({"type": "response.create"})) == [{"type": "response.create"}]


def test_held_response_released_if_the_update_is_refused():
    proto = RealtimeProtocol(GA)
    proto.client_event({"type": "response.create"})
    actions = server(proto, type="error", event_id="e",
                     error={"type": "invalid_request_error", "code": "invalid_value", "message": "x"})
    assert sent(actions) == [{"type": "response.create"}]


def test_function_call_output_object_sent_as_string():
    proto = RealtimeProtocol(GA)
    event = {"type": "conversation.item.create",
             "item": {"type": "function_call_output", "call_id": "call_1", "output": {"temp": 21}}}
    out = sent(proto.client_event(event))[0]
    assert out["item"]["output"] == '{"temp":21}'
    validate_client_event(out, GA)


def test_beta_assistant_text_item_translated():
    proto = RealtimeProtocol(GA)
    out = sent(proto.client_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "text", "text": "hello"}]}}))[0]
    assert out["item"]["content"][0]["type"] == "output_text"
    validate_client_event(out, GA)


def test_session_update_needs_a_session_object():
    with pytest.raises(ClientEventError):
        RealtimeProtocol(GA).client_event({"type": "session.update", "session": "x"})


def test_server_events_forwarded_byte_for_byte_but_audio_is_not():
    proto = RealtimeProtocol(GA)
    raw = b'{"type":"response.output_audio_transcript.delta","delta":"hi  there"}'
    assert proto.server_event(raw) == [Forward(raw)]
    audio = base64.b64encode(b"\x01\x02\x03\x04").decode()
    actions = server(proto, type="response.output_audio.delta", item_id="it", content_index=0,
                     response_id="r", delta=audio)
    assert actions == [Play(("it", 0), b"\x01\x02\x03\x04")]
    beta = server(RealtimeProtocol(BETA), type="response.audio.delta", item_id="it",
                  content_index=1, response_id="r", delta=audio)
    assert beta == [Play(("it", 1), b"\x01\x02\x03\x04")]
    done = server(proto, type="response.output_audio.done", item_id="it", content_index=0)
    assert EndAudio(("it", 0)) in done


def test_garbage_from_the_server_is_logged_not_raised():
    proto = RealtimeProtocol(GA)
    assert isinstance(proto.server_event(b"not json")[0], Log)
    assert isinstance(proto.server_event(b"[1,2]")[0], Log)
    assert isinstance(server(proto, type="response.output_audio.delta", delta="!!!")[0], Log)


def _delta(proto, ms, item="item_a", response="resp_1"):
    """``ms`` of 24 kHz pcm model audio for ``item``."""
    pcm = bytes(48 * ms)
    return server(proto, type="response.output_audio.delta", item_id=item, content_index=0,
                  response_id=response, delta=base64.b64encode(pcm).decode())


def _updated(proto, turn_detection, generation=GA):
    if generation == GA:
        session = {"type": "realtime", "audio": {"input": {"turn_detection": turn_detection}}}
    else:
        session = {"modalities": ["audio", "text"], "turn_detection": turn_detection}
    return server(proto, type="session.updated", event_id="e", session=session)


def _speaking(proto):
    server(proto, type="response.created", event_id="e", response={"id": "resp_1"})
    _delta(proto, 2000)
    return server(proto, type="input_audio_buffer.speech_started", audio_start_ms=10,
                  item_id="u1", event_id="e")


def test_a_server_that_interrupts_cancels_itself_the_module_flushes_and_truncates_only():
    proto = RealtimeProtocol(GA)        # no session.updated yet: the service's default, interrupting
    assert _speaking(proto)[-1] == Flush(cancel=False)
    events = sent(proto.barge_in(True, ("item_a", 0), 1240, cancel=False))
    assert events == [{"type": "conversation.item.truncate", "item_id": "item_a",
                       "content_index": 0, "audio_end_ms": 1240}]
    for event in events:
        validate_client_event(event, GA)
    assert _delta(proto, 100) == []        # what the server streams of it meanwhile is dropped
    assert proto.barge_ins == 1


@pytest.mark.parametrize("generation", [GA, BETA])
def test_interrupt_response_confirmed_true_means_no_cancel(generation):
    proto = RealtimeProtocol(generation)
    _updated(proto, {"type": "server_vad", "interrupt_response": True}, generation)
    assert _speaking(proto)[-1] == Flush(cancel=False)


@pytest.mark.parametrize("generation", [GA, BETA])
def test_interrupt_response_false_leaves_the_model_talking(generation):
    proto = RealtimeProtocol(generation)
    _updated(proto, {"type": "server_vad", "interrupt_response": False}, generation)
    assert not any(isinstance(a, Flush) for a in _speaking(proto))


def test_interrupt_response_false_with_barge_in_always_flushes_cancels_and_truncates():
    proto = RealtimeProtocol(GA, barge_in="always")
    _updated(proto, {"type": "semantic_vad", "interrupt_response": False})
    assert _speaking(proto)[-1] == Flush(cancel=True)
    events = sent(proto.barge_in(True, ("item_a", 0), 700, cancel=True))
    assert [e["type"] for e in events] == ["response.cancel", "conversation.item.truncate"]
    assert events[0]["response_id"] == "resp_1" and events[0]["event_id"].startswith("openai_s2s-cancel-")
    for event in events:
        validate_client_event(event, GA)


def test_barge_in_always_still_sends_no_cancel_to_a_server_that_interrupts():
    proto = RealtimeProtocol(GA, barge_in="always")
    assert _speaking(proto)[-1] == Flush(cancel=False)


def test_barge_in_never_does_nothing_on_speech():
    proto = RealtimeProtocol(GA, barge_in="never")
    assert not any(isinstance(a, Flush) for a in _speaking(proto))


def test_a_session_update_that_leaves_turn_detection_out_keeps_what_the_server_said():
    proto = RealtimeProtocol(GA)
    _updated(proto, {"type": "server_vad", "interrupt_response": False})
    server(proto, type="session.updated", event_id="e", session={"type": "realtime", "instructions": "x"})
    assert not proto.server_interrupts
    _updated(proto, None)
    assert proto.turn_detection is None and not proto.server_interrupts


def test_the_callers_barge_in_without_turn_detection_cancels_and_truncates():
    proto = RealtimeProtocol(GA)
    _updated(proto, None)
    server(proto, type="response.created", event_id="e", response={"id": "resp_1"})
    _delta(proto, 1000)
    events = sent(proto.barge_in(True, ("item_a", 0), 300, cancel=True))
    assert [e["type"] for e in events] == ["response.cancel", "conversation.item.truncate"]


def test_a_cancel_with_no_audio_yet_still_goes_out():
    proto = RealtimeProtocol(GA)
    server(proto, type="response.created", event_id="e", response={"id": "resp_1"})
    assert [e["type"] for e in sent(proto.barge_in(False, None, 0, cancel=True))] == ["response.cancel"]
    assert proto.barge_ins == 0


def test_truncate_never_passes_the_audio_received_for_the_item():
    proto = RealtimeProtocol(GA)
    server(proto, type="response.created", event_id="e", response={"id": "resp_1"})
    _delta(proto, 490)      # the caller heard 500 ms: 490 of audio and the padded last frame
    events = sent(proto.barge_in(True, ("item_a", 0), 500))
    assert events[-1]["audio_end_ms"] == 490


def test_truncate_bound_in_g711_counts_one_byte_a_sample():
    proto = RealtimeProtocol(GA)
    proto.client_event({"type": "session.update", "session": {"type": "realtime", "audio": {
        "output": {"format": {"type": "audio/pcmu"}}}}})
    server(proto, type="response.output_audio.delta", item_id="item_a", content_index=0,
           response_id="r", delta=base64.b64encode(bytes(8 * 250)).decode())
    assert sent(proto.barge_in(True, ("item_a", 0), 300))[-1]["audio_end_ms"] == 250


def _refused_cancel(proto, event_id):
    error = {"type": "invalid_request_error", "code": "response_cancel_not_active",
             "message": "Cancellation failed: no active response found"}
    if event_id is not None:
        error["event_id"] = event_id
    return server(proto, type="error", event_id="evt_9", error=error)


def test_the_refusal_of_the_modules_own_cancel_is_not_an_error_event():
    proto = RealtimeProtocol(GA, barge_in="always")
    _updated(proto, {"type": "server_vad", "interrupt_response": False})
    _speaking(proto)
    cancel = sent(proto.barge_in(True, ("item_a", 0), 100, cancel=True))[0]
    actions = _refused_cancel(proto, cancel["event_id"])
    assert not any(isinstance(a, Forward) for a in actions)
    assert [a.level for a in actions if isinstance(a, Log)] == ["DEBUG"]
    # the same refusal again is no longer ours: the caller's own cancels are its business
    assert any(isinstance(a, Forward) for a in _refused_cancel(proto, cancel["event_id"]))


def test_the_refusal_of_a_callers_cancel_is_forwarded():
    proto = RealtimeProtocol(GA)
    assert any(isinstance(a, Forward) for a in _refused_cancel(proto, "caller-1"))
    assert any(isinstance(a, Forward) for a in _refused_cancel(proto, None))


def test_no_barge_in_when_nothing_was_playing():
    proto = RealtimeProtocol(GA)
    server(proto, type="response.created", event_id="e", response={"id": "r"})
    assert proto.barge_in(False, None, 0) == [] and proto.barge_ins == 0


def test_session_created_in_beta_shape_switches_generation():
    proto = RealtimeProtocol(GA)
    actions = server(proto, type="session.created", event_id="e",
                     session={"object": "realtime.session", "modalities": ["audio", "text"],
                              "input_audio_format": "pcm16"})
    assert proto.generation == BETA
    assert any(isinstance(a, Log) and "beta" in a.message for a in actions)
    # and from then on beta-shaped events are sent as they are
    assert "modalities" in sent(proto.client_event({"type": "session.update", "session": {
        "modalities": ["audio"]}}))[0]["session"]


def test_session_expired_becomes_the_end_reason():
    proto = RealtimeProtocol(GA)
    server(proto, type="error", event_id="e", error={"type": "invalid_request_error",
           "code": "session_expired", "message": "Your session hit the maximum duration of 60 minutes."})
    assert proto.end_reason == "session_expired"


def test_idle_timeout_forwarded_or_ends():
    event = dict(type="input_audio_buffer.timeout_triggered", event_id="e", item_id="i",
                 audio_start_ms=0, audio_end_ms=5000)
    assert not any(isinstance(a, End) for a in server(RealtimeProtocol(GA), **event))
    actions = server(RealtimeProtocol(GA, idle_timeout_action="end"), **event)
    assert End("idle_timeout") in actions
