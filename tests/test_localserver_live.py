"""The local server speaks OpenAI's GPT-Live API at /v1/live/sessions (and Azure Foundry's
/openai/v1/live/sessions): session.start first and strictly checked, the caller's audio
transcribed while it comes, replies paced in real time and stopped by the caller's speech,
mute, context appends, audio fixtures, close, expiry, usage, injected events and the stats.
Every event each way is checked against the openai package's ``openai.types.live`` models."""
import base64
import json
import time
import typing
import urllib.request

import pytest
import websocket

from openai.types.live.client_event import ClientEvent
from openai_s2s.localserver.live import STARTUP_S
from openai_s2s.localserver.server import STATS_PATH
from engine_harness import KEY, dominant_freq, silence, tone, wait_until
from test_localserver_live_kit import (AZURE_LIVE_PATH, LIVE_PATH, MODEL, OUTPUT_DELTA, LiveClient,
                                       encode_as, errors, live_server, of, output_audio, pcm_of,
                                       speech, transcript)

DEFAULT_SESSION = {
    "model": MODEL, "status": "active",
    "audio": {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}},
    "delegation": {"type": "client", "acknowledgement_delay_ms": 0},
    "input": [], "instructions": None, "safety_identifier": None, "store": False, "triggers": [],
}
# how far ahead of real time the output may run, as the client sees it: the server mixer's
# lead (about 200 ms) and 100 ms for the delta in flight
MAX_LEAD_MS = 300
PACKAGE_CLIENT_EVENTS = [typing.get_args(m.model_fields["type"].annotation)[0]
                         for m in typing.get_args(typing.get_args(ClientEvent)[0])]


@pytest.fixture
def server():
    """Fast startup and output (8x real time), echo replies."""
    with live_server(speed=8.0) as srv:
        yield srv


@pytest.fixture
def client(server):
    c = LiveClient(server)
    yield c
    c.close()


# -- the upgrade ------------------------------------------------------------------------------
@pytest.mark.parametrize("path,header", [
    (LIVE_PATH, f"Authorization: Bearer {KEY}"),
    (AZURE_LIVE_PATH, f"api-key: {KEY}"),
    (LIVE_PATH + "?call=abc", f"Authorization: Bearer {KEY}"),
])
def test_both_live_paths_speak_live(server, path, header):
    c = LiveClient(server, path, header=[header])
    assert c.start()["model"] == MODEL
    assert server.connections[-1].generation == "live"
    assert server.connections[-1].path == path
    c.close()


@pytest.mark.parametrize("query", ["?model=gpt-live-1", "?model=", "?call=1&model=gpt-realtime"])
def test_a_model_in_the_url_is_refused_400_with_a_json_error(server, query):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveClient(server, LIVE_PATH + query)
    assert refused.value.status_code == 400
    error = json.loads(refused.value.resp_body)["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "unknown_parameter", "model")
    assert "session.start" in error["message"]


def test_the_key_is_checked_as_for_realtime(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveClient(server, LIVE_PATH, header=["Authorization: Bearer sk-wrong"])
    assert refused.value.status_code == 401
    assert json.loads(refused.value.resp_body)["error"]["code"] == "invalid_api_key"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveClient(server, LIVE_PATH + "/other")
    assert refused.value.status_code == 404


# -- session.start ----------------------------------------------------------------------------
def test_a_passive_socket_receives_nothing_and_start_is_answered_with_the_defaults():
    with live_server(speed=4.0) as srv:
        c = LiveClient(srv)
        assert c.quiet(0.4) == []
        sent = time.monotonic()
        c.send({"type": "session.start", "event_id": "start-1", "session": {"model": MODEL}})
        started = c.recv()
        # session.started comes about a second later on the service; here that second runs at speed
        assert time.monotonic() - sent >= STARTUP_S / 4.0 * 0.9
        assert started["type"] == "session.started"
        assert started["client_event_id"] == "start-1"
        session = dict(started["session"])
        assert session.pop("id").startswith("sess_")
        assert time.time() < session.pop("expires_at") <= time.time() + 3600 + 1
        assert session == DEFAULT_SESSION
        c.close()


def test_start_echoes_what_it_was_given(client):
    session = client.start(
        audio={"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": {"id": "voice_123"}}},
        instructions="Be brief.", store=True, safety_identifier="user-1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        delegation={"type": "client", "acknowledgement_delay_ms": 250})
    assert session["audio"] == {"format": {"type": "audio/pcmu", "rate": 8000},
                                "output": {"voice": {"id": "voice_123"}}}
    assert (session["instructions"], session["store"], session["safety_identifier"]) == ("Be brief.", True, "user-1")
    assert session["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 250}


@pytest.mark.parametrize("session,code,param", [
    ({"model": MODEL, "turn_detection": {"type": "server_vad"}}, "unknown_parameter", "session.turn_detection"),
    ({"model": MODEL, "voice": "marin"}, "unknown_parameter", "session.voice"),
    ({"model": MODEL, "audio": {"format": {"type": "audio/pcm", "rate": 24000, "channels": 1}}},
     "unknown_parameter", "session.audio.format.channels"),
    ({"model": MODEL, "audio": {"input": {}}}, "unknown_parameter", "session.audio.input"),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"text": "hi", "lang": "en"}]}]},
     "unknown_parameter", "session.input[0].content[0].lang"),
    ({"model": MODEL, "delegation": {"type": "responses", "responses": {
        "model": "gpt-5.2", "tools": [{"type": "function", "name": "f", "handler": "x"}]}}},
     "unknown_parameter", "session.delegation.responses.tools[0].handler"),
    ({}, "missing_required_parameter", "session.model"),
    ({"model": "gpt-realtime"}, "model_not_found", "session.model"),
    ({"model": MODEL, "audio": {"format": {"type": "audio/pcm", "rate": 8000}}}, "invalid_value",
     "session.audio.format.rate"),
    ({"model": MODEL, "audio": {"format": {"type": "audio/pcmu", "rate": 16000}}}, "invalid_value",
     "session.audio.format.rate"),
    ({"model": MODEL, "audio": {"format": {"type": "audio/pcma"}}}, "missing_required_parameter",
     "session.audio.format.rate"),
    ({"model": MODEL, "audio": {"format": {"type": "audio/opus", "rate": 48000}}}, "invalid_value",
     "session.audio.format.type"),
    ({"model": MODEL, "audio": {"output": {"voice": "bob"}}}, "invalid_value", "session.audio.output.voice"),
    ({"model": MODEL, "store": "yes"}, "invalid_type", "session.store"),
    ({"model": MODEL, "delegation": {"type": "responses"}}, "missing_required_parameter",
     "session.delegation.responses"),
    ({"model": MODEL, "delegation": {"type": "server"}}, "invalid_value", "session.delegation.type"),
])
def test_start_is_checked_strictly_and_may_be_sent_again(client, session, code, param):
    client.send({"type": "session.start", "event_id": "bad", "session": session}, valid=False)
    error = client.until("error")["error"]
    assert (error["type"], error["code"], error["param"], error["client_event_id"]) == \
        ("invalid_request_error", code, param, "bad")
    # the API's words: an unknown, missing or mistyped parameter is named; a bad value is quoted
    assert param in error["message"] if code in ("unknown_parameter", "missing_required_parameter",
                                                 "invalid_type") else "'" in error["message"]
    # refused, the connection stays open and the session may still start
    assert client.start()["model"] == MODEL


def test_a_second_start_is_refused(client):
    client.start()
    client.send({"type": "session.start", "event_id": "again", "session": {"model": MODEL}})
    error = client.until("error")["error"]
    assert (error["code"], error["client_event_id"]) == ("session_already_started", "again")


@pytest.mark.parametrize("event", [
    {"type": "session.input_audio.append", "event_id": "a1", "audio": "AAAA"},
    {"type": "session.input_audio.mute", "event_id": "a1"},
    {"type": "session.close", "event_id": "a1"},
])
def test_nothing_but_session_start_may_come_first(client, server, event):
    client.send(event)
    error = client.until("error")["error"]
    assert (error["type"], error["code"], error["client_event_id"]) == \
        ("invalid_request_error", "session_not_started", "a1")
    client.send({k: v for k, v in event.items() if k != "event_id"})
    assert client.until("error")["error"]["client_event_id"] is None
    assert client.start()["model"] == MODEL
    assert server.connections[-1].appends == 0   # audio refused is not counted


def test_audio_before_session_started_is_refused():
    with live_server(speed=1.0) as srv:
        c = LiveClient(srv)
        c.send({"type": "session.start", "session": {"model": MODEL}})
        c.send({"type": "session.input_audio.append", "event_id": "early",
                "audio": base64.b64encode(silence(24000, 0.02)).decode()})
        first, second = c.recv(), c.recv()
        assert first["type"] == "error" and first["error"]["code"] == "session_not_started"
        assert first["error"]["client_event_id"] == "early"
        assert second["type"] == "session.started"
        assert srv.connections[0].appends == 0
        c.close()


@pytest.mark.parametrize("kind", ["session.input_audio.commit", "input_audio_buffer.append", "response.cancel",
                                  "conversation.item.truncate", "input_audio_buffer.clear", "session.updated",
                                  "transport.dtmf.send"])
def test_an_unknown_client_event_is_refused_with_the_supported_types(client, kind):
    client.start()
    client.send({"type": kind, "event_id": "x1"}, valid=False)
    error = client.until("error")["error"]
    assert (error["code"], error["param"], error["client_event_id"]) == ("invalid_value", "type", "x1")
    assert f"'{kind}'" in error["message"]
    for supported in PACKAGE_CLIENT_EVENTS:
        assert f"'{supported}'" in error["message"]


def test_an_unknown_field_in_a_client_event_is_refused(client):
    client.start()
    client.send({"type": "session.input_audio.mute", "event_id": "m", "reason": "x"}, valid=False)
    error = client.until("error")["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", "reason")
    client.send({"type": "session.input_audio.append"}, valid=False)
    assert client.until("error")["error"]["param"] == "audio"
    client.ws.send("not json {")
    assert client.until("error")["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("event", [
    {"type": "response.item.create", "event_id": "r1",
     "item": {"type": "function_call_output", "call_id": "call_1", "output": "x"}},
    {"type": "response.create", "event_id": "r1"},
])
def test_responses_commands_under_client_delegation_are_refused(client, event):
    client.start()
    client.send(event)
    error = client.until("error")["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"{event['type']} requires Responses delegation."
    assert error["client_event_id"] == "r1"


# -- session.update ---------------------------------------------------------------------------
@pytest.mark.parametrize("update,param", [
    ({"instructions": "Be rude."}, "session.instructions"),
    ({"model": "gpt-live-1.1"}, "session.model"),
    ({"audio": {"output": {"voice": "cedar"}}}, "session.audio"),
    ({"input": []}, "session.input"),
    ({"store": True}, "session.store"),
])
def test_startup_fields_are_immutable(client, update, param):
    client.start()
    client.send({"type": "session.update", "event_id": "u", "session": update}, valid=False)
    error = client.until("error")["error"]
    assert (error["code"], error["param"], error["client_event_id"]) == ("unknown_parameter", param, "u")
    assert "cannot change" in error["message"]


def test_session_update_changes_delegation_and_triggers_only(client):
    started = client.start()
    client.send({"type": "session.update", "session": {"voice": "cedar"}}, valid=False)
    assert client.until("error")["error"]["param"] == "session.voice"
    client.send({"type": "session.update", "event_id": "t", "session": {"delegation": {
        "type": "responses", "responses": {"model": "gpt-5.2"}}}})
    error = client.until("error")["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "session.delegation.type")
    trigger = {"type": "decisions", "event_type": "session.input_transcript.delta",
               "decisions": {"questions": [{"type": "predicate", "instructions": "Is it urgent?"}]}}
    client.send({"type": "session.update", "event_id": "ok", "session": {
        "delegation": {"type": "client", "acknowledgement_delay_ms": 500}, "triggers": [trigger]}})
    updated = client.until("session.updated")
    assert updated["client_event_id"] == "ok"
    assert updated["session"] == dict(started, delegation={"type": "client", "acknowledgement_delay_ms": 500},
                                      triggers=[trigger])
    client.send({"type": "session.update", "session": {"triggers": [trigger, trigger]}})
    assert client.until("error")["error"]["param"] == "session.triggers[1].event_type"


# -- audio in, transcript, paced output --------------------------------------------------------
@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_the_reply_is_paced_in_real_time(speed):
    """The echo of a 1 s utterance is sent as the server mixer plays it: at no moment has more
    audio come than the time since the utterance ended (x speed) plus the mixer's lead."""
    with live_server(speed=speed, reply="echo") as srv:
        c = LiveClient(srv)
        c.start()
        said = speech(1.0)
        c.append(said, chunk=4800)
        t0 = time.monotonic()   # before the server can have heard the utterance end
        c.append(silence(24000, 0.6), chunk=4800)
        got_ms, events = 0.0, []
        while got_ms < 1000:
            event = c.recv()
            events.append(event)
            if event["type"] == OUTPUT_DELTA:
                got_ms += len(base64.b64decode(event["delta"])) / 48
                elapsed_ms = (time.monotonic() - t0) * 1000
                assert got_ms <= elapsed_ms * speed + MAX_LEAD_MS, (got_ms, elapsed_ms)
        assert (time.monotonic() - t0) * speed >= (1000 - MAX_LEAD_MS) / 1000
        words = of(events, "session.input_transcript.delta")
        assert [w["delta"] for w in words] == ["echo", " echo", " echo"]
        assert [(w["start_ms"], w["end_ms"]) for w in words] == [(0, 300), (300, 600), (600, 900)]
        assert output_audio(events) == said      # the echo, sample for sample
        assert transcript(events) == "echo of 1000 ms"
        spans = [(e["start_ms"], e["end_ms"]) for e in of(events, "session.output_transcript.delta")]
        assert spans[0][0] >= 1000 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        for delta in of(events, OUTPUT_DELTA):
            assert set(delta) == {"type", "delta"}    # no event_id, no times on the primary socket
        c.close()


@pytest.mark.parametrize("fmt,bytes_per_100ms", [
    ({"type": "audio/pcm", "rate": 16000}, 3200),
    ({"type": "audio/pcmu", "rate": 8000}, 800),
    ({"type": "audio/pcma", "rate": 8000}, 800),
])
def test_audio_goes_both_ways_in_the_session_format(fmt, bytes_per_100ms):
    with live_server(speed=8.0, reply="echo") as srv:
        c = LiveClient(srv)
        c.start(audio={"format": fmt})
        rate = fmt["rate"]
        wire = encode_as(fmt, tone(300, rate, 0.8) + silence(rate, 0.6))
        c.append(wire, chunk=bytes_per_100ms)
        events = c.between("session.output_transcript.delta")
        events += c.quiet(0.5)
        deltas = [base64.b64decode(e["delta"]) for e in of(events, OUTPUT_DELTA)]
        assert len(deltas) == 8 and all(len(d) == bytes_per_100ms for d in deltas)
        assert abs(dominant_freq(pcm_of(fmt, b"".join(deltas)).tobytes(), rate) - 300) < 20
        assert transcript(events) == "echo of 800 ms"
        assert srv.connections[0].audio_bytes == len(wire)
        c.close()


def test_the_callers_speech_stops_the_output_within_a_delta():
    with live_server(speed=1.0, reply="tone") as srv:
        c = LiveClient(srv)
        c.start()
        c.say(0.3)
        c.until(OUTPUT_DELTA)            # the 1 s tone has begun
        c.append(speech(0.4), chunk=960)
        after = c.quiet(1.0)
        # what was already sent (the mixer's lead) may still come; then nothing more of the tone
        deltas = sum(1 for _, e in c.seen if e["type"] == OUTPUT_DELTA)
        assert deltas <= MAX_LEAD_MS // 100 + 1, deltas
        # the transcript of the audio already sent may come too; nothing announces the stop
        others = [e for e in after if e["type"] not in (OUTPUT_DELTA, "session.output_transcript.delta")]
        assert others and all(e["type"] == "session.input_transcript.delta" for e in others), others
        assert transcript(others, "session.input_transcript.delta") == "tone"
        server_deltas = [e for e in srv.connections[0].sent if e["type"] == OUTPUT_DELTA]
        assert len(server_deltas) == deltas < 10
        c.close()


def test_mute_turns_the_input_into_silence_until_unmute(client, server):
    client.start()
    client.send({"type": "session.input_audio.mute", "event_id": "m1"})
    muted = client.until("session.input_audio.muted")
    assert muted["client_event_id"] == "m1"
    client.say(0.6)
    assert client.quiet(0.4) == []       # no transcript, no reply: the model heard silence
    client.send({"type": "session.input_audio.unmute"})
    unmuted = client.until("session.input_audio.unmuted")
    assert "client_event_id" not in unmuted
    client.say(0.6)
    events = client.between(OUTPUT_DELTA)
    assert transcript(events, "session.input_transcript.delta") == "echo echo"
    # the reply can begin before the server has read the last quiet chunk (a loaded machine
    # delays the client's send): the server reads events in order, so once it acknowledges a
    # later mute it has counted every append before it
    client.send({"type": "session.input_audio.mute", "event_id": "m2"})
    assert client.until("session.input_audio.muted")["client_event_id"] == "m2"
    conn = server.connections[-1]
    assert conn.appends == 2 * len(speech(0.6) + silence(24000, 0.6)) // 4800   # muted audio is counted


# -- context appends ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["instructions", "thinking", "commentary"])
def test_context_appends_are_acknowledged_on_the_timeline(client, kind):
    client.start()
    client.append(silence(24000, 1.0))
    client.send({"type": f"session.{kind}.append", "event_id": "c1", "content": "The order shipped.",
                 "delegation_id": None})
    appended = client.until(f"session.{kind}.appended")
    assert (appended["start_ms"], appended["end_ms"], appended["client_event_id"]) == (1000, 1000, "c1")
    later = client.quiet(0.6)
    if kind == "commentary":   # spoken: audio, and its words as the output transcript
        assert output_audio(later) and transcript(later) == "The order shipped."
    else:
        assert later == []


@pytest.mark.parametrize("event,code,param", [
    ({"content": "x" * 2001, "delegation_id": None}, "string_above_max_length", "content"),
    ({"content": "ok", "delegation_id": "del_unknown"}, "invalid_value", "delegation_id"),
    ({"content": "ok"}, "missing_required_parameter", "delegation_id"),
    ({"content": ["ok"], "delegation_id": None}, "invalid_type", "content"),
])
def test_context_appends_are_refused_when_wrong(client, event, code, param):
    client.start()
    client.send(dict(event, type="session.commentary.append", event_id="c"), valid=False)
    error = client.until("error")["error"]
    assert (error["code"], error["param"], error["client_event_id"]) == (code, param, "c")
    assert client.quiet(0.3) == []


def test_an_audio_fixture_plays_with_the_input_dropped(client):
    client.start()
    fixture = tone(660, 24000, 4.0)    # half a second at 8x: time to speak into it
    client.send({"type": "session.output_audio.fixture.play", "event_id": "f",
                 "audio": base64.b64encode(fixture).decode()})
    playing = client.recv()
    assert (playing["type"], playing["client_event_id"]) == ("session.output_audio.fixture.playing", "f")
    client.send({"type": "session.commentary.append", "content": "hi", "delegation_id": None})
    client.say(0.4)   # dropped: no transcript of it, no reply to it
    events = client.between("session.output_audio.fixture.played")
    assert errors(events)[0]["code"] == "audio_fixture_active"
    assert output_audio(events) == fixture
    assert of(events, "session.input_transcript.delta") == [] and transcript(events) == ""
    assert client.quiet(0.4) == []


# -- close, expiry, usage ----------------------------------------------------------------------
def test_session_close_ends_with_session_closed_then_close_1000(client, server):
    started = client.start()
    client.append(silence(24000, 2.0))
    client.send({"type": "session.close", "event_id": "bye"})
    closed = client.until("session.closed")
    assert (closed["reason"], closed["client_event_id"]) == ("close_requested", "bye")
    assert closed["session"] == started and closed["usage"] == {"seconds": 2}
    assert client.close_code() == 1000
    assert wait_until(lambda: server.connections[-1].closed, 5)
    assert server.connections[-1].close_code == 1000


def test_the_session_limit_ends_with_session_closed_expired():
    with live_server(speed=8.0, fault="expire_after:0.6") as srv:
        c = LiveClient(srv)
        started = c.start()
        assert started["expires_at"] <= time.time() + 1.6
        events = c.quiet(0.2)
        closed = c.until("session.closed")
        assert events == [] and closed["reason"] == "expired" and "client_event_id" not in closed
        assert closed["session"] == started
        assert c.close_code() == 1000
        c.close()


def test_usage_is_updated_every_15_seconds_of_session_time(client):
    client.start()
    client.append(silence(24000, 31.0), chunk=48000)
    client.send({"type": "session.close"})
    events = client.between("session.closed")
    assert [e["usage"] for e in of(events, "session.usage.updated")] == [{"seconds": 15}, {"seconds": 30}]
    assert events[-1]["usage"] == {"seconds": 31}


# -- injected events, faults, stats ------------------------------------------------------------
def test_a_test_can_make_the_server_send_dtmf_and_info(client, server):
    client.start()
    server.connections[-1].send_dtmf("5")
    dtmf = client.until("transport.dtmf.send")
    assert dtmf["event"] == "5" and dtmf["event_id"].startswith("event_")
    server.connections[-1].send_info("data_channel_permissions", "all events allowed")
    info = client.until("info")
    assert (info["code"], info["message"]) == ("data_channel_permissions", "all events allowed")


def test_garbage_and_close_after_faults_follow_session_started():
    with live_server(speed=8.0, fault="garbage") as srv:
        c = LiveClient(srv)
        c.start()
        assert c.ws.recv() == "this is not json {"
        c.close()
    with live_server(speed=8.0, fault="close_after:2") as srv:
        c = LiveClient(srv)
        c.start()
        c.send({"type": "session.input_audio.mute"})
        c.until("session.input_audio.muted")
        assert wait_until(lambda: srv.connections[0].close_code == 1011, 5)
        c.close()


@pytest.mark.parametrize("record", [True, False])
def test_appends_and_bytes_are_counted_per_connection_as_for_realtime(record):
    with live_server(speed=8.0, record=record) as srv:
        one, two = LiveClient(srv, LIVE_PATH + "?call=one"), LiveClient(srv, AZURE_LIVE_PATH + "?call=two")
        one.send({"type": "session.input_audio.append", "audio": "AAAA"})   # before start: not counted
        one.until("error")
        one.start()
        two.start()
        for _ in range(5):
            one.append(silence(24000, 0.02))
        two.append(silence(24000, 0.1))
        one.send({"type": "session.input_audio.append", "audio": "not base64!"}, valid=False)
        assert one.until("error")["error"]["param"] == "audio"
        assert wait_until(lambda: srv.connections[1].appends == 1, 5)
        first, second = srv.connections
        assert (first.appends, first.audio_bytes) == (5, 5 * 960)
        assert (second.appends, second.audio_bytes) == (1, 4800)
        assert len(first.received) == (8 if record else 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{STATS_PATH}", timeout=5) as reply:
            stats = json.loads(reply.read())
        assert (stats["appends"], stats["audio_bytes"]) == (6, 5 * 960 + 4800)
        assert [(r["path"], r["generation"], r["appends"]) for r in stats["connections"]] == [
            (LIVE_PATH + "?call=one", "live", 5), (AZURE_LIVE_PATH + "?call=two", "live", 1)]
        one.close()
        two.close()


def test_realtime_beside_live_on_one_server(server):
    live = LiveClient(server)
    live.start()
    realtime = websocket.create_connection(server.url + "/v1/realtime?model=gpt-realtime", timeout=5,
                                           header=[f"Authorization: Bearer {KEY}"])
    assert json.loads(realtime.recv())["type"] == "session.created"
    assert [c.generation for c in server.connections] == ["live", "ga"]
    realtime.close()
    live.close()
