"""End to end: the command surface, a fake switch (see fakeswitch.py for what it fakes)
and a real local Realtime server on loopback."""
import time

import orjson
import pytest

from openai_s2s.call import registry
from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import (KEY, SEED_SESSION_UPDATE, Harness, dominant_freq, loud,
                            silence, tone, wait_until)


def talk(call, freq=440, seconds=0.6, pause=0.8):
    call.say(tone(freq, call.rate, seconds) + silence(call.rate, pause))


def test_connect_event_carries_the_channel_headers(h):
    h.call("u-conn")
    reply = h.create("u-conn")
    assert reply.startswith("+OK connecting to ws://127.0.0.1:") and "(ga)" in reply
    headers, body = h.connected("u-conn")
    assert headers["Unique-ID"] == "u-conn"
    assert headers["llm-vendor"] == "openai" and headers["media-bugname"] == "openai_s2s"
    assert orjson.loads(body)["protocol"] == "ga"
    assert h.server.connections[0].headers["authorization"] == f"Bearer {KEY}"
    created = h.wait_server_event("u-conn", "session.created")
    assert created is not None


def test_no_audio_goes_up_before_the_first_session_update(h):
    call = h.call("u-gate")
    h.create("u-gate")
    h.connected("u-gate")
    talk(call)
    time.sleep(0.5)
    assert h.uplink_audio() == b""
    h.send("u-gate", SEED_SESSION_UPDATE)
    assert wait_until(lambda: len(h.uplink_audio()) > 0)
    kinds = [e["type"] for e in h.received()]
    assert kinds.index("session.update") < kinds.index("input_audio_buffer.append")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_tone_in_arrives_as_tone_and_model_audio_is_played(h, rate):
    uuid = f"u-tone-{rate}"
    call = h.call(uuid, rate=rate)
    h.create(uuid)
    h.connected(uuid)
    h.send(uuid, SEED_SESSION_UPDATE)          # beta-shaped, as the seed README has it
    assert h.wait_server_event(uuid, "session.updated")
    talk(call, freq=440)
    # what the model heard: 24 kHz pcm containing the caller's 440 Hz
    assert wait_until(lambda: len(loud(h.uplink_audio())) > 24000 * 0.4)
    assert abs(dominant_freq(loud(h.uplink_audio()), 24000) - 440) < 5
    # the server echoes the turn; the caller hears it, resampled to the channel rate
    assert h.wait_server_event(uuid, "output_audio.playback_started", timeout=10)
    stopped = h.wait_server_event(uuid, "output_audio.playback_stopped", timeout=10)
    assert orjson.loads(stopped[1])["completion_reason"] == "completed"
    heard = loud(bytes(call.heard))
    assert len(heard) > rate * 2 * 0.3
    assert abs(dominant_freq(heard, rate) - 440) < 5
    # audio deltas are played, never forwarded as events
    assert not h.server_events(uuid, "response.output_audio.delta")
    assert h.server_events(uuid, "response.output_audio_transcript.done")
    status = orjson.loads(h.api(f"{uuid} status")[4:])
    assert status["counters"]["deltas"] > 0 and status["counters"]["frames_out"] > 0
    assert status["counters"]["translations"] == 1
    assert status["latency_ms"]["uplink"]["n"] > 0 and status["latency_ms"]["downlink"]["n"] > 0
    assert any("beta shape translated to GA" in line for line in h.logs)


def test_a_media_path_that_chooses_its_frame_times_is_told_when_audio_starts(h):
    """host.CallMedia's optional audio_ready(): once when a response's audio starts, not per
    delta (the local server streams 4x faster than real time, so nothing runs dry after)."""
    call = h.call("u-ready")
    starts = []
    call.audio_ready = lambda: starts.append(sum(f is not None for f in call.heard_frames))
    h.create("u-ready")
    h.connected("u-ready")
    h.send("u-ready", SEED_SESSION_UPDATE)
    h.send("u-ready", {"type": "response.create"})
    assert h.wait_server_event("u-ready", "output_audio.playback_stopped", timeout=10)
    deltas = orjson.loads(h.api("u-ready status")[4:])["counters"]["deltas"]
    assert deltas > 2 and len(starts) == 1
    assert starts[0] == 0   # before the caller heard any of the model


def test_the_heap_is_trimmed_when_the_last_session_ends_and_again_after_the_teardown(h, monkeypatch):
    from openai_s2s import process
    trims = []
    monkeypatch.setattr(process, "_trim_heap", lambda: trims.append(len(registry.all_sessions())))
    monkeypatch.setattr(process, "TRIM_AGAIN_AFTER", (0.3, 1.2))
    for uuid in ("u-trim-1", "u-trim-2"):
        h.call(uuid)
        h.create(uuid)
        h.connected(uuid)
    assert h.api("u-trim-1 session.delete") == "+OK session deleted"
    time.sleep(0.6)
    assert trims == []                     # another session is live: nothing to hand back yet
    assert h.api("u-trim-2 session.delete") == "+OK session deleted"
    assert trims == [0]                    # at once, with no session left
    time.sleep(0.7)
    assert trims == [0, 0]                 # after the channels' teardown
    assert wait_until(lambda: len(trims) == 3, 3) and trims == [0, 0, 0]   # after the switch's threads
    h.call("u-trim-3")
    h.create("u-trim-3")
    h.connected("u-trim-3")
    assert h.api("u-trim-3 session.delete") == "+OK session deleted"
    assert trims == [0, 0, 0, 0]
    time.sleep(0.7)
    assert trims == [0, 0, 0, 0, 0]
    h.call("u-trim-4")                     # a new session before the last trim: it is skipped
    h.create("u-trim-4")
    time.sleep(0.9)
    assert trims == [0, 0, 0, 0, 0]
    assert h.api("u-trim-4 session.delete") == "+OK session deleted"


def test_the_last_trim_comes_after_the_switch_lets_the_calls_threads_go():
    from openai_s2s import process
    pool_worker_idle_exit = 5.0   # switch_core_session.c: a worker ends after 5 s without work
    assert process.TRIM_AGAIN_AFTER[0] < pool_worker_idle_exit < process.TRIM_AGAIN_AFTER[-1] - 2


def test_g711_at_8k_both_ways(h):
    call = h.call("u-ulaw")
    h.create("u-ulaw")
    h.connected("u-ulaw")
    h.send("u-ulaw", {"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                      "output": {"format": {"type": "audio/pcmu"}}}}})
    assert h.wait_server_event("u-ulaw", "session.updated")
    talk(call, freq=500)
    assert h.wait_server_event("u-ulaw", "output_audio.playback_stopped", timeout=10)
    from openai_s2s.media import g711
    up = g711.ulaw_decode(h.uplink_audio())
    assert abs(dominant_freq(loud(up), 8000) - 500) < 5
    assert abs(dominant_freq(loud(bytes(call.heard)), 8000) - 500) < 5


def test_response_create_before_session_update_is_held(h):
    call = h.call("u-hold")
    h.create("u-hold")
    h.connected("u-hold")
    # the seed's order: response.create first, then session.update
    assert h.send("u-hold", {"type": "response.create", "response": {
        "modalities": ["text", "audio"], "instructions": "Please assist.", "voice": "alloy"}}).startswith("+OK")
    h.send("u-hold", {"type": "session.update", "session": {"instructions": "You are a test agent.",
                                                           "tools": []}})
    assert h.wait_server_event("u-hold", "response.done", timeout=10)
    kinds = [e["type"] for e in h.received()]
    assert kinds.index("session.update") < kinds.index("response.create")
    assert call.rate == 8000


def test_tool_call_round_trip(h):
    call = h.call("u-tool")
    h.create("u-tool")
    h.connected("u-tool")
    h.send("u-tool", {"type": "session.update", "session": dict(SEED_SESSION_UPDATE["session"], tools=[{
        "name": "get_weather", "type": "function", "description": "weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]}}], tool_choice="auto")})
    talk(call)
    done = h.switch.wait_event("openai_s2s::server_event", lambda hd, b: (
        orjson.loads(b).get("type") == "response.output_item.done"
        and orjson.loads(b)["item"]["type"] == "function_call"), timeout=10)
    item = orjson.loads(done[1])["item"]
    assert item["name"] == "get_weather" and orjson.loads(item["arguments"])["location"]
    # the caller answers with an object output (sent as a string), then asks for a response
    h.send("u-tool", {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": item["call_id"], "output": {"temp_c": 21}}})
    h.send("u-tool", {"type": "response.create"})
    assert h.wait_server_event("u-tool", "output_audio.playback_started", timeout=10)
    output = [e for e in h.received() if e["type"] == "conversation.item.create"][0]
    assert output["item"]["output"] == '{"temp_c":21}'


def test_delete_ends_everything_and_says_so(h):
    call = h.call("u-del")
    h.create("u-del")
    h.connected("u-del")
    h.send("u-del", SEED_SESSION_UPDATE)
    talk(call)
    assert h.wait_server_event("u-del", "output_audio.playback_started", timeout=10)
    assert h.api("u-del session.delete") == "+OK session deleted"   # while audio flows both ways
    headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=5)
    assert headers["Unique-ID"] == "u-del"
    assert orjson.loads(body)["reason"] == "session.delete"
    assert registry.get("u-del") is None and not call.media_running
    assert wait_until(lambda: h.server.connections[0].closed)
    assert h.api("u-del session.delete").startswith("-ERR no openai_s2s session")
    # and a new session on the same call works
    assert h.create("u-del").startswith("+OK")
    assert h.switch.wait_event("openai_s2s::connect", timeout=5, start=1) is not None


def test_hangup_while_audio_flows(h):
    call = h.call("u-hang")
    h.create("u-hang")
    h.connected("u-hang")
    h.send("u-hang", SEED_SESSION_UPDATE)
    talk(call)
    assert h.wait_server_event("u-hang", "output_audio.playback_started", timeout=10)
    call.hangup()
    headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=5)
    assert orjson.loads(body)["reason"] == "hangup"
    assert wait_until(lambda: registry.get("u-hang") is None)


def test_bad_input_with_a_live_session_changes_nothing(tmp_path):
    conf = f"""<configuration name="openai_s2s.conf"><settings>
      <param name="max-event-bytes" value="2048"/>
      <param name="instructions-dir" value="{tmp_path}"/></settings></configuration>"""
    (tmp_path / "agent.txt").write_text("You are a file-configured agent.")
    with LocalRealtimeServer(api_key=KEY) as server:
        h = Harness(server, conf)
        try:
            h.call("u-bad")
            h.create("u-bad")
            h.connected("u-bad")
            assert h.wait_server_event("u-bad", "session.created")
            before = len(h.received())
            cases = {
                "u-bad session.create ws://x v1/realtime bearer k": "-ERR a session already exists",
                "u-bad client.event {not json": "-ERR client.event is not valid JSON",
                "u-bad client.event [1,2]": "-ERR client.event must be a JSON object",
                'u-bad client.event {"type": 5}': '-ERR client.event needs a string "type"',
                "u-bad client.event " + orjson.dumps({"type": "x", "pad": "y" * 3000}).decode():
                    "-ERR client.event larger than 2048 bytes",
                'u-bad client.event {"type":"session.update","session":{"instructions":"file://../etc/passwd"}}':
                    "-ERR instructions file '../etc/passwd' is outside",
                'u-bad client.event {"type":"session.update","session":{"instructions":"file://nope.txt"}}':
                    "-ERR instructions file 'nope.txt'",
                'u-bad client.event {"type":"session.update","session":"x"}':
                    "-ERR session.update: 'session' must be an object",
                "u-bad mute nobody": "-USAGE:",
            }
            for line, expected in cases.items():
                assert h.api(line).startswith(expected), (line, h.replies[-1])
            time.sleep(0.3)
            assert len(h.received()) == before
            assert registry.get("u-bad").state == "connected"
            # the good file:// case reads the configured directory
            assert h.api('^^|u-bad|client.event|{"type":"session.update","session":{"type":"realtime",'
                         '"instructions":"file://agent.txt"}}').startswith("+OK")
            assert wait_until(lambda: any(e.get("type") == "session.update" for e in h.received()))
            update = [e for e in h.received() if e["type"] == "session.update"][0]
            assert update["session"]["instructions"] == "You are a file-configured agent."
        finally:
            h.finish()


def test_key_from_channel_variable_and_query_auth(h):
    h.call("u-var", openai_s2s_api_key=KEY)
    assert h.create("u-var", auth="query", key=None).startswith("+OK")
    assert h.connected("u-var")
    conn = h.server.connections[0]
    assert f"api-key={KEY}" in conn.path
    h.call("u-nokey")
    assert h.create("u-nokey", key=None).startswith("-ERR no api-key")


@pytest.mark.parametrize("fault,host,expected", [
    (None, "ws://127.0.0.1:1", "refused"),
    (None, "nonexistent.invalid", "dns:"),
    ("refuse:403", None, "http 403"),
    ("slow_handshake:3", None, "timeout"),
])
def test_connect_failed_says_why(server, fault, host, expected):
    if fault:
        server.set_fault(fault)
    h = Harness(server)
    try:
        h.call("u-fail", openai_s2s_connect_timeout="1")
        assert h.create("u-fail", host=host).startswith("+OK")
        headers, body = h.switch.wait_event("openai_s2s::connect_failed", timeout=10)
        assert headers["Unique-ID"] == "u-fail"
        assert orjson.loads(body)["reason"].startswith(expected)
        assert wait_until(lambda: registry.get("u-fail") is None)
        assert not h.switch.named("openai_s2s::disconnect")
    finally:
        h.finish()


def test_wrong_key_and_wrong_path(h):
    h.call("u-401")
    h.create("u-401", key="sk-wrong-key-xyz")
    assert orjson.loads(h.switch.wait_event("openai_s2s::connect_failed")[1])["reason"] == "http 401"
    h.call("u-404")
    h.create("u-404", path="v2/nothing")
    assert h.switch.wait_event("openai_s2s::connect_failed",
                               lambda hd, b: hd["Unique-ID"] == "u-404")[1] == b'{"reason":"http 404"}'


def test_remote_close_mid_stream(server):
    server.set_fault("close_after:6")
    h = Harness(server)
    try:
        call = h.call("u-drop")
        h.create("u-drop")
        h.connected("u-drop")
        h.send("u-drop", SEED_SESSION_UPDATE)
        talk(call)
        headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=10)
        assert orjson.loads(body)["code"] == 1011
        assert wait_until(lambda: registry.get("u-drop") is None) and not call.media_running
    finally:
        h.finish()


@pytest.mark.parametrize("fault", ["garbage", "binary"])
def test_garbage_from_the_server_is_survived(server, fault):
    server.set_fault(fault)
    h = Harness(server)
    try:
        h.call("u-junk")
        h.create("u-junk")
        h.connected("u-junk")
        assert wait_until(lambda: any("ignored" in line for line in h.logs))
        assert h.send("u-junk", {"type": "session.update", "session": {"type": "realtime"}}).startswith("+OK")
        assert h.wait_server_event("u-junk", "session.updated")
        assert registry.get("u-junk").state == "connected"
    finally:
        h.finish()


def test_stalled_server_ends_with_ping_timeout(server):
    server.set_fault("stall")
    h = Harness(server)
    try:
        call = h.call("u-stall", openai_s2s_ping_interval="0.2", openai_s2s_send_timeout="0.5")
        h.create("u-stall")
        h.connected("u-stall")
        headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=10)
        assert orjson.loads(body)["reason"] == "ping timeout"
        assert not call.media_running
    finally:
        h.finish()


def test_session_expiry_is_the_disconnect_reason(server):
    server.set_fault("expire_after:0.5")
    h = Harness(server)
    try:
        h.call("u-exp")
        h.create("u-exp")
        h.connected("u-exp")
        headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=10)
        assert orjson.loads(body) == {"reason": "session_expired", "code": 1000}
    finally:
        h.finish()


def test_pause_and_mute(h):
    call = h.call("u-ctl")
    h.create("u-ctl")
    h.connected("u-ctl")
    h.send("u-ctl", SEED_SESSION_UPDATE)
    assert wait_until(lambda: len(h.uplink_audio()) > 0)
    assert h.api("u-ctl mute user") == "+OK muted user"
    time.sleep(0.1)
    sent = len(h.uplink_audio())
    time.sleep(0.3)
    assert len(h.uplink_audio()) == sent
    assert h.api("u-ctl unmute") == "+OK unmuted all"
    assert wait_until(lambda: len(h.uplink_audio()) > sent)
    assert h.api("u-ctl pause") == "+OK paused"
    time.sleep(0.1)
    sent = len(h.uplink_audio())
    time.sleep(0.3)
    assert len(h.uplink_audio()) == sent
    assert h.api("u-ctl resume") == "+OK resumed"
    assert h.api("u-ctl mute model") == "+OK muted model"
    talk(call)
    assert h.wait_server_event("u-ctl", "response.done", timeout=10)
    time.sleep(0.5)
    assert loud(bytes(call.heard)) == b""   # the model was muted: the caller heard nothing
    status = orjson.loads(h.api("u-ctl status")[4:])
    assert status["muted"] == {"user": False, "model": True}


def test_status_of_all_sessions(h):
    for uuid in ("u-s1", "u-s2"):
        h.call(uuid)
        h.create(uuid)
        h.connected(uuid)
    listing = orjson.loads(h.api("status")[4:])["sessions"]
    assert sorted(s["uuid"] for s in listing) == ["u-s1", "u-s2"]
    assert all(s["state"] == "connected" and KEY not in orjson.dumps(s).decode() for s in listing)


def test_beta_server_and_azure_preview_path(h):
    call = h.call("u-beta")
    path = "openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-realtime-preview"
    assert "(beta)" in h.create("u-beta", path=path, auth="api-key")
    h.connected("u-beta")
    conn = h.server.connections[0]
    assert conn.generation == "beta" and conn.headers["api-key"] == KEY
    assert conn.headers["openai-beta"] == "realtime=v1"
    h.send("u-beta", dict(SEED_SESSION_UPDATE, session=dict(SEED_SESSION_UPDATE["session"],
                                                            input_audio_format="g711_ulaw",
                                                            output_audio_format="g711_ulaw")))
    talk(call, freq=400)
    assert h.wait_server_event("u-beta", "output_audio.playback_stopped", timeout=10)
    assert abs(dominant_freq(loud(bytes(call.heard)), 8000) - 400) < 5
    update = [e for e in h.received() if e["type"] == "session.update"][0]
    assert update["session"]["turn_detection"]["type"] == "server_vad"   # untouched on beta


def test_uplink_overrun_is_bounded_and_reported(h):
    """White-box: the sender is not running, so captured frames pile up against the bound."""
    from openai_s2s.call.session import Session
    from openai_s2s.control.config import Settings
    from openai_s2s.realtime.endpoint import build_endpoint
    call = h.call("u-over")
    options = dict(Settings().values, uplink_max_ms=100)
    session = Session(h.switch, call, build_endpoint("127.0.0.1:1", "v1/realtime", "bearer", KEY),
                      options, "ga")
    session.uplink.open = True
    for _ in range(50):
        session._on_capture(bytes(320))
    assert len(session.uplink.queue) == 5 and session.uplink.dropped == 45
    session.housekeeping.tick(time.monotonic())
    headers, body = h.switch.wait_event("openai_s2s::buffer_overrun", timeout=1)
    assert orjson.loads(body) == {"direction": "uplink", "dropped_ms": 900}


def test_a_server_that_stops_reading_holds_up_no_other_call(h, server):
    """One pump thread sends for every call: a call whose socket is full must wait alone,
    drop its own audio with a buffer_overrun, and still end on session.delete."""
    h.call("u-stall")
    live = h.call("u-live")
    server.set_fault("stall")
    h.create("u-stall")
    h.connected("u-stall")
    server.set_fault(None)
    h.create("u-live")
    h.connected("u-live")
    for uuid in ("u-stall", "u-live"):
        assert h.send(uuid, SEED_SESSION_UPDATE).startswith("+OK")
    stalled = registry.get("u-stall")
    assert wait_until(lambda: stalled.uplink.open, 5)
    frame = tone(440, 8000, 0.02)
    deadline = time.monotonic() + 30
    while stalled.uplink.pending is None and time.monotonic() < deadline:
        for _ in range(25):
            stalled._on_capture(frame)
        time.sleep(0.02)
    assert stalled.uplink.pending is not None, "the stalled call's socket never filled"
    for _ in range(300):                      # more than the uplink bound (5 s) holds
        stalled._on_capture(frame)
    assert stalled.uplink.dropped > 0
    h.switch.wait_event("openai_s2s::buffer_overrun", lambda hd, b: hd.get("Unique-ID") == "u-stall", 5)
    before = len(h.uplink_audio(1))
    talk(live, freq=440)
    assert wait_until(lambda: len(h.uplink_audio(1)) > before + 8000, 10), "the live call's uplink stalled"
    assert h.api("u-stall session.delete").startswith("+OK")
    assert registry.get("u-stall") is None and registry.get("u-live") is not None


def test_a_channel_that_stops_writing_is_reported_once(h):
    """The model is heard only in frames the channel writes; a channel that writes nothing
    (parked without send_silence_when_idle) gets a warning."""
    call = h.call("u-mute")
    h.create("u-mute")
    h.connected("u-mute")
    h.send("u-mute", SEED_SESSION_UPDATE)
    assert wait_until(lambda: len(h.uplink_audio()) > 0)
    assert not [line for line in h.logs if "has written no audio" in line]
    call.stop_writing()
    assert wait_until(lambda: [line for line in h.logs if "has written no audio" in line], 6)
    time.sleep(0.5)
    assert len([line for line in h.logs if "has written no audio" in line]) == 1
    assert h.api("u-mute session.delete").startswith("+OK")


def test_no_writes_while_the_playout_bug_is_paused_are_no_warning(h):
    """A media bug paused while the model is silent is not asked for frames: that is no
    channel gone quiet."""
    call = h.call("u-paused")
    h.create("u-paused")
    h.connected("u-paused")
    h.send("u-paused", SEED_SESSION_UPDATE)
    assert wait_until(lambda: len(h.uplink_audio()) > 0)
    call.write_paused = True
    call.stop_writing()
    time.sleep(3)
    assert not [line for line in h.logs if "has written no audio" in line]
    call.write_paused = False   # audio for the model to play, and still no frame written
    assert wait_until(lambda: [line for line in h.logs if "has written no audio" in line], 6)
    assert h.api("u-paused session.delete").startswith("+OK")


def test_unicast_media_where_the_switch_has_none_is_a_clear_error(h):
    """media=unicast needs the switch's unicast mode (fsbridge.FsCall.start_unicast); the
    double has none, so the command must say so and create nothing."""
    h.call("u-uni", openai_s2s_media="unicast")
    assert h.create("u-uni") == "-ERR media=unicast is not available on this switch"
    assert h.api("u-uni status").startswith("-ERR no openai_s2s session")
    h.call("u-uni-bad", openai_s2s_media="rtp")
    assert h.create("u-uni-bad").startswith("-ERR openai_s2s_media: expected one of auto, bug, unicast")
