"""The GPT-Live state machine on its own: every client event it sends checked against the openai
package's ``types.live`` models (no field they do not have), every server event it is fed built
from them."""
from __future__ import annotations

import base64
import json
import typing
from typing import Any, Dict, List

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from openai.types.live.server_event import ServerEvent
from openai_s2s.media.formats import PCM16, PCMU
from openai_s2s.realtime.generations import make_protocol
from openai_s2s.realtime.live import LiveProtocol
from openai_s2s.realtime.protocol import (LIVE, ClientEventError, EndAudio, ExpiresAt, Flush, Forward, Log, OpenUplink,
                                          Play, PlayDigits, ResponseIdle, Send, SetOutput, ToolCall, Transcript,
                                          generation_for_path)
from openai_s2s.realtime.service import DEFAULT_LIVE_MODEL
from openai_s2s.localserver.live_responses import Backend
from realtime_models import validate_client_event, validate_server_event




def strict_client(event: Dict[str, Any]) -> None:
    validate_client_event(event, "live")


def sent(actions: List[Any]) -> List[Dict[str, Any]]:
    events = [a.event for a in actions if isinstance(a, Send)]
    for event in events:
        strict_client(event)
    return events


def server(event: Dict[str, Any]) -> bytes:
    event.setdefault("event_id", "event_1") if event["type"] not in ("session.output_audio.delta",) else None
    validate_server_event(event, "live")
    return orjson.dumps(event)


def resource(fmt: Dict[str, Any] = None, delegation: Dict[str, Any] = None) -> Dict[str, Any]:
    return {"id": "sess_1", "model": "gpt-live-1.1", "status": "active", "expires_at": 1900000000,
            "audio": {"format": fmt or {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}},
            "delegation": delegation or {"type": "client"}}


def started(proto: LiveProtocol, **kw: Any) -> List[Any]:
    return proto.server_event(server({"type": "session.started", "session": resource(**kw)}))


def audio(n: int = 960) -> bytes:
    return server({"type": "session.output_audio.delta", "delta": base64.b64encode(b"\x01\x00" * n).decode()})


REALTIME_UPDATE = {"type": "session.update", "session": {
    "type": "realtime", "instructions": "Be brief.", "output_modalities": ["audio"],
    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
              "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}}


def test_the_path_chooses_live():
    assert generation_for_path("/v1/live/sessions") == LIVE
    assert generation_for_path("openai/v1/live/sessions") == LIVE
    assert generation_for_path("/v1/realtime?model=gpt-realtime-2.1") == "ga"
    assert generation_for_path("/v1/realtime?model=x", "live") == LIVE
    assert isinstance(make_protocol(LIVE, {}), LiveProtocol)


def test_a_realtime_session_update_becomes_session_start():
    proto = LiveProtocol()
    actions = proto.client_event(REALTIME_UPDATE)
    (start,) = sent(actions)
    assert start["type"] == "session.start"
    assert start["session"] == {"model": DEFAULT_LIVE_MODEL, "instructions": "Be brief.",
                                "audio": {"output": {"voice": "marin"},
                                          "format": {"type": "audio/pcmu", "rate": 8000}}}
    notes = [a.message for a in actions if isinstance(a, Log)]
    assert any("turn_detection" in n and "output_modalities" in n for n in notes)
    assert not proto.uplink_open, "caller audio waits for session.started"
    actions = started(proto, fmt={"type": "audio/pcmu", "rate": 8000})
    assert OpenUplink(PCMU, "session.input_audio.append") in actions
    assert SetOutput(PCMU) in actions
    assert ExpiresAt(1900000000.0) in actions, "the server's expires_at is the session's end"
    assert proto.uplink_open and proto.input_format == proto.output_format == PCMU


def test_a_native_session_start_passes_unchanged_and_only_once():
    proto = LiveProtocol()
    start = {"type": "session.start", "session": {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    assert sent(proto.client_event(start)) == [start]
    assert proto.input_format == PCM16
    with pytest.raises(ClientEventError, match="already started"):
        proto.client_event(start)


def test_commands_wait_for_session_start_and_then_for_session_started():
    proto = LiveProtocol()
    append = {"type": "session.instructions.append", "content": "x", "delegation_id": None}
    with pytest.raises(ClientEventError, match="session.start"):
        proto.client_event(append)
    proto.client_event(REALTIME_UPDATE)
    assert sent(proto.client_event(append)) == []      # held
    assert sent(started(proto)) == [append]


def test_text_items_before_the_start_become_its_history():
    proto = LiveProtocol()
    for role, text in (("user", "I called before"), ("assistant", "Welcome back")):
        kind = "input_text" if role == "user" else "output_text"
        proto.client_event({"type": "conversation.item.create", "item": {
            "type": "message", "role": role, "content": [{"type": kind, "text": text}]}})
    (start,) = sent(proto.client_event(REALTIME_UPDATE))
    assert [m["role"] for m in start["session"]["input"]] == ["user", "assistant"]
    assert start["session"]["input"][1]["content"][0] == {"type": "output_text", "text": "Welcome back"}


def test_text_items_during_the_session_are_appended_context():
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    user = sent(proto.client_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "The caller pressed 1"}]}}))
    assert user == [{"type": "session.instructions.append", "content": "The caller pressed 1", "delegation_id": None}]
    said = sent(proto.client_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "text", "text": "earlier"}]}}))
    assert said[0]["type"] == "session.thinking.append"


@pytest.mark.parametrize("event, words", [
    ({"type": "response.cancel"}, "no response.cancel"),
    ({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, "audio_end_ms": 1}, "truncate"),
    ({"type": "input_audio_buffer.commit"}, "commit"),
    ({"type": "response.create"}, "decides itself when to speak"),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": "x"}},
     "Responses"),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                   "content": [{"type": "input_audio", "audio": "AAAA"}]}},
     "text only"),
    ({"type": "session.update", "session": {"audio": {"output": {"voice": "cedar"}}}}, "voice"),
])
def test_what_has_no_mapping_is_refused_by_name_and_changes_nothing(event, words):
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    before = dict(vars(proto))
    with pytest.raises(ClientEventError, match=words) as err:
        proto.client_event(event)
    assert event["type"] in str(err.value)
    assert vars(proto) == before


def test_a_greeting_becomes_instructions_and_later_instructions_are_appended():
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    greet = sent(proto.client_event({"type": "response.create", "response": {"instructions": "Greet the caller"}}))
    assert greet == [{"type": "session.instructions.append", "content": "Greet the caller", "delegation_id": None}]
    more = sent(proto.client_event({"type": "session.update", "session": {"type": "realtime", "instructions": "Now in French."}}))
    assert more[0]["type"] == "session.instructions.append"
    native = {"type": "session.update", "session": {"triggers": []}}
    assert sent(proto.client_event(native)) == [native]


def test_tools_go_to_a_responses_backend_and_their_calls_come_back():
    proto = LiveProtocol()
    update = {"type": "session.update", "session": {"type": "realtime", "instructions": "Help.", "tools": [
        {"type": "function", "name": "lookup", "description": "find an order",
         "parameters": {"type": "object", "properties": {}}}], "tool_choice": "auto"}}
    (start,) = sent(proto.client_event(update))
    backend = start["session"]["delegation"]
    assert backend["type"] == "responses" and backend["responses"]["tools"][0]["name"] == "lookup"
    started(proto, delegation=start["session"]["delegation"])
    # the local server's Responses backend makes the nested stream (validated against the
    # package's ResponseStreamEvent by the server() helper)
    stream = Backend(backend["responses"]).delegate("del_1", "resp_1")
    actions = []
    for inner in stream.events:
        actions += proto.server_event(server({"type": "response.event", "event": inner, "delegation_id": "del_1"}))
        if inner["type"] == "response.created":
            assert proto.response_id == "resp_1" and proto.responses_created == 1
    call = next(a for a in actions if isinstance(a, ToolCall))
    assert call.name == "lookup" and isinstance(call.arguments, str)
    assert ResponseIdle() in actions and proto.response_id is None, "response.completed ends it"
    out = sent(proto.client_event({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call.call_id, "output": {"status": "shipped"}}}))
    assert out == [{"type": "response.item.create", "item": {"type": "function_call_output", "call_id": call.call_id,
                                                             "output": "{\"status\":\"shipped\"}"}}]
    assert sent(proto.client_event({"type": "response.create"})) == [{"type": "response.create"}]


def test_the_caller_taking_the_turn_flushes_and_starts_a_new_item():
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    (play,) = proto.server_event(audio())
    assert isinstance(play, Play) and play.item == ("live-0", 0)
    words = proto.server_event(server({"type": "session.output_transcript.delta", "delta": "Hello there",
                                       "start_ms": 0, "end_ms": 500}))
    assert not any(isinstance(a, Transcript) for a in words)
    actions = proto.server_event(server({"type": "session.input_transcript.delta", "delta": "wait",
                                         "start_ms": 600, "end_ms": 800}))
    assert Flush(cancel=False) in actions and EndAudio(("live-0", 0)) in actions
    assert Transcript("assistant", "live-0-assistant", "Hello there") in actions
    assert proto.barge_in(True, ("live-0", 0), 400) and proto.barge_ins == 1
    assert not any(isinstance(a, Send) for a in proto.barge_in(True, ("live-0", 0), 400, cancel=True)), \
        "GPT-Live has no cancel or truncate to send"
    (play,) = proto.server_event(audio())
    assert play.item == ("live-1", 0)
    # a caller speaking while the model is silent is no barge-in
    again = proto.server_event(server({"type": "session.input_transcript.delta", "delta": "more",
                                       "start_ms": 900, "end_ms": 1000}))
    assert Flush(cancel=False) in again   # the model's live-1 audio was playing
    quiet = proto.server_event(server({"type": "session.input_transcript.delta", "delta": " words",
                                       "start_ms": 1000, "end_ms": 1100}))
    assert not any(isinstance(a, Flush) for a in quiet)


def test_barge_in_never_leaves_playout_alone():
    proto = LiveProtocol(barge_in="never")
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    proto.server_event(audio())
    actions = proto.server_event(server({"type": "session.input_transcript.delta", "delta": "hi",
                                         "start_ms": 0, "end_ms": 1}))
    assert not any(isinstance(a, Flush) for a in actions)


def test_mute_uses_the_apis_own_events_once_started():
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    assert proto.input_mute(True) == []          # not started: remembered
    actions = started(proto)
    assert {"type": "session.input_audio.mute"} in sent(actions)
    assert sent(proto.input_mute(False)) == [{"type": "session.input_audio.unmute"}]


def test_the_server_asks_for_digits_and_bad_ones_are_ignored():
    proto = LiveProtocol()
    actions = proto.server_event(server({"type": "transport.dtmf.send", "event": "5"}))
    assert PlayDigits("5") in actions and isinstance(actions[0], Forward)
    bad = proto.server_event(orjson.dumps({"type": "transport.dtmf.send", "event": "5;hangup", "event_id": "e"}))
    assert not any(isinstance(a, PlayDigits) for a in bad)


def test_session_closed_ends_transcripts_and_names_expiry():
    proto = LiveProtocol()
    proto.client_event(REALTIME_UPDATE)
    started(proto)
    proto.server_event(server({"type": "session.input_transcript.delta", "delta": "bye", "start_ms": 0, "end_ms": 1}))
    actions = proto.server_event(server({"type": "session.closed", "reason": "expired", "session": resource(),
                                         "usage": {"seconds": 3.0}}))
    assert Transcript("user", "live-0-user", "bye") in actions
    assert proto.end_reason == "session_expired"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"type":"session.output_audio.delta","delta":"@@"}',
                                 b'{"type":"session.started","session":"x"}',
                                 b'{"type":"session.input_transcript.delta","delta":5}',
                                 b'{"type":"response.event","event":[]}'])
def test_malformed_server_events_are_dropped_with_a_warning(raw):
    proto = LiveProtocol()
    actions = proto.server_event(raw)
    assert actions and all(isinstance(a, Log) for a in actions)
    assert not proto.started


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=8)
_FIELDS = ("delta", "session", "event", "item", "reason", "error", "audio", "expires_at", "response", "type")


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(typing.get_args(m.model_fields["type"].annotation)[0]
                                   for m in typing.get_args(typing.get_args(ServerEvent)[0]))),
       fields=st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=4), begun=st.booleans())
def test_no_server_event_of_any_shape_raises(kind, fields, begun):
    """Whatever a server sends, as any GPT-Live event type with any field values, is handled or
    dropped with a warning; it never raises into the receiver thread."""
    proto = LiveProtocol()
    if begun:
        proto.client_event(REALTIME_UPDATE)
    # json, not orjson: a server may send integers past 64 bits too
    actions = proto.server_event(json.dumps(dict(fields, type=kind)).encode())
    assert isinstance(actions, list)
