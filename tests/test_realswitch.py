"""openai_s2s inside a real FreeSWITCH, driven through fs_cli and a real ESL client (greenswitch).

Skipped, with the reason, where no FreeSWITCH with mod_python3 is installed. The switch
is started from the project's freeswitch_conf (python.conf.xml's startup-script
registers the API) with a minimal configuration around it; calls are loopback calls:
leg A is "the caller" (tones are played into it, and what it hears is recorded), leg B
is the channel the module works on.
"""
import base64
import os
import time
import wave
from pathlib import Path

import numpy as np
import orjson
import pytest

from openai_s2s.tools import testswitch as realswitch
from engine_harness import dominant_freq, loud

REASON = realswitch.missing_reason()
pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

KEY = "sk-realswitch-test-KEY-0123456789"
SUBCLASSES = ("openai_s2s::connect", "openai_s2s::connect_failed", "openai_s2s::server_event",
              "openai_s2s::disconnect", "openai_s2s::buffer_overrun", "openai_s2s::reconnect")


def dialplan(server_url: str) -> str:
    return realswitch.PARK_EXTENSIONS + f"""
      <extension name="bridged"><condition field="destination_number" expression="^bridged$">
        <action application="set" data="loopback_bowout=false"/>
        <action application="answer"/>
        <action application="bridge" data="{{loopback_bowout=false}}loopback/park/default"/>
      </condition></extension>
      <extension name="agent"><condition field="destination_number" expression="^agent$">
        <action application="set" data="openai_s2s_host={server_url}"/>
        <action application="set" data="openai_s2s_instructions=You are the real-switch test agent."/>
        <action application="set" data="openai_s2s_greeting=Say hello."/>
        <action application="python" data="openai_s2s"/>
        <action application="hangup"/>
      </condition></extension>"""


@pytest.fixture(scope="module")
def server():
    from openai_s2s.localserver import LocalRealtimeServer
    with LocalRealtimeServer(api_key=KEY, speed=4.0, reply="echo") as srv:
        yield srv


@pytest.fixture(scope="module")
def fs(server, tmp_path_factory):
    # the key comes from the switch's environment: a `set` in the dialplan would be logged by the switch
    switch = realswitch.RealSwitch(tmp_path_factory.mktemp("fs"), dialplan(server.url), env={"OPENAI_API_KEY": KEY})
    switch.start()
    switch.wait_for_api()
    yield switch
    if switch.alive():
        switch.stop()


@pytest.fixture(scope="module")
def esl(fs):
    import gevent
    import greenswitch

    class JsonESL(greenswitch.InboundESL):
        """greenswitch, keeping event-json bodies whole (its plain-event parser splits lines)."""
        def handle_event(self, event):
            if event.headers.get("Content-Type") == "text/event-json":
                data = self._read_socket(self.sock_file, int(event.headers["Content-Length"]))
                event.headers = orjson.loads(data)
                self._esl_event_queue.put(event)
            else:
                super().handle_event(event)

    client = JsonESL("127.0.0.1", fs.esl_port, realswitch.PASSWORD)
    client.connect()
    client.events = []
    for subclass in SUBCLASSES + ("BACKGROUND_JOB",):
        client.register_handle(subclass, lambda event: client.events.append(event.headers))
    client.send("event json BACKGROUND_JOB CUSTOM " + " ".join(SUBCLASSES))
    client.wait = lambda seconds: gevent.sleep(seconds)
    yield client
    # after the shutdown test the switch is gone, and greenswitch's stop() would wait forever
    # for the reply to its "exit"
    with gevent.Timeout(5, False):
        client.stop()
    client.sock.close()


def api(esl, command: str) -> str:
    return esl.send(f"api {command}").data.strip()


def wait_event(esl, subclass, predicate=lambda e: True, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in list(esl.events):
            if (subclass is None or event.get("Event-Subclass") == subclass) and predicate(event):
                return event
        esl.wait(0.05)
    return None


def server_event(esl, uuid, kind, timeout=10.0):
    return wait_event(esl, "openai_s2s::server_event", lambda e: e.get("Unique-ID") == uuid
                      and orjson.loads(e.get("_body", "{}")).get("type") == kind, timeout)


def new_call(fs, esl, name: str, extension: str = "park"):
    """Leg A (the caller, recording what it hears) and leg B (the module's channel)."""
    a = f"caller-{name}"
    record = fs.workdir / f"{name}.wav"
    reply = api(esl, f"originate {{origination_uuid={a},RECORD_READ_ONLY=true,RECORD_STEREO=false}}"
                     f"loopback/{extension}/default &record({record})")
    assert reply.startswith("+OK"), reply
    return a, channel_var(esl, a, "other_loopback_leg_uuid"), record


def channel_var(esl, uuid: str, name: str, timeout: float = 5.0) -> str:
    """A channel variable, waiting for it to be set."""
    deadline = time.monotonic() + timeout
    while True:
        value = api(esl, f"uuid_getvar {uuid} {name}")
        if (value and not value.startswith("-ERR") and value != "_undef_") or time.monotonic() > deadline:
            return value
        esl.wait(0.05)


def recorded(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def uplink_audio(connection) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in list(connection.received)
                    if e.get("type") == "input_audio_buffer.append")


def session_status(esl, uuid):
    reply = api(esl, f"uuid_openai_s2s {uuid} status")
    assert reply.startswith("+OK"), reply
    return orjson.loads(reply[4:])


def no_leftovers(fs, esl, uuid):
    assert "openai_s2s" not in api(esl, f"uuid_buglist {uuid}")
    status = orjson.loads(fs.cli("uuid_openai_s2s status")[4:])
    assert status["sessions"] == [] and status["threads"] == 0, status


def test_api_is_registered(fs):
    listing = fs.cli("show api uuid_openai_s2s")
    assert "uuid_openai_s2s,OpenAI Realtime speech-to-speech" in listing and "1 total" in listing
    assert fs.cli("uuid_openai_s2s").startswith("-USAGE: uuid_openai_s2s <uuid> session.create")
    assert fs.cli("uuid_openai_s2s no-such-uuid session.delete") == "-ERR no openai_s2s session on no-such-uuid"
    assert fs.cli("python openai_s2s status").startswith('+OK {"sessions":[]')   # the fallback entry point
    # started as root without -np, the switch takes SCHED_FIFO 1 and the module's threads with it
    # (as another user it may have none, and the log says so)
    scheduling = orjson.loads(fs.cli("uuid_openai_s2s status")[4:])["scheduling"]
    if os.geteuid() == 0:
        assert scheduling == {"policy": "fifo", "priority": 1}, scheduling
        assert "without realtime scheduling" not in fs.log_path.read_text()
    else:
        assert ("without realtime scheduling" in fs.log_path.read_text()) == (scheduling["policy"] == "other")


def test_bgapi_through_esl(esl):
    reply = esl.send("bgapi uuid_openai_s2s no-such-uuid status")
    job = reply.headers.get("Job-UUID")
    assert job, reply.headers
    done = wait_event(esl, None, lambda e: e.get("Event-Name") == "BACKGROUND_JOB" and e.get("Job-UUID") == job)
    assert done is not None and done["_body"].strip() == "-ERR no openai_s2s session on no-such-uuid"


def test_parked_call_audio_both_ways_barge_in_and_delete(fs, esl, server):
    a, b, record = new_call(fs, esl, "parked")
    mark = len(server.connections)
    # bgapi through ESL, as an application would send it
    reply = api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime?model=gpt-realtime bearer {KEY}")
    assert reply.startswith("+OK connecting"), reply
    connect = wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert connect is not None and connect["llm-vendor"] == "openai" and connect["Channel-Name"]
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    # the seed README's beta-shaped session.update, through fs_cli this time
    update = {"type": "session.update", "session": {
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "threshold": 0.8, "prefix_padding_ms": 300,
                           "silence_duration_ms": 300}}}
    assert fs.cli(f"uuid_openai_s2s {b} client.event {orjson.dumps(update).decode()}").startswith("+OK")
    assert server_event(esl, b, "session.updated")
    # a tone played to the caller leg arrives at the server as that tone
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
    assert server_event(esl, b, "input_audio_buffer.speech_started")
    assert server.wait_for(lambda: len(loud(uplink_audio(conn))) > 24000 * 2 * 0.5, 10)
    assert abs(dominant_freq(loud(uplink_audio(conn)), 24000) - 440) < 5
    # the server's echo reaches the caller leg as that audio
    assert server_event(esl, b, "output_audio.playback_started")
    stopped = server_event(esl, b, "output_audio.playback_stopped")
    assert orjson.loads(stopped["_body"])["completion_reason"] == "completed"
    status = session_status(esl, b)
    assert status["counters"]["frames_out"] > 0 and status["media"]["frames_written"] > 0
    # barge-in: a long reply, then the caller talks over it
    server.reply = "tone"
    server.speed = 1.5
    try:
        api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"response.create\"}}")
        assert server_event(esl, b, "output_audio.playback_started")
        esl.wait(0.3)
        api(esl, f"uuid_broadcast {a} tone_stream://%(500,0,300) aleg")
        interrupted = wait_event(esl, "openai_s2s::server_event", lambda e: e.get("Unique-ID") == b and
                                 orjson.loads(e["_body"]).get("completion_reason") == "interrupted")
        assert interrupted is not None
        assert server.wait_for(lambda: conn.truncations, 5)
        status = session_status(esl, b)
        assert status["counters"]["barge_ins"] == 1
        assert status["counters"]["frames_after_barge_in"] <= 1     # silent within one frame
        assert conn.truncations[0]["audio_end_ms"] <= status["counters"]["frames_out"] * 20
        assert_barge_in_like_the_service(esl, b, conn)
    finally:
        server.reply, server.speed = "echo", 4.0
    # media timing on the real media thread
    assert status["media"]["write_callbacks"] > 50
    print("media:", status["media"], "latency:", status["latency_ms"])
    assert fs.cli(f"uuid_openai_s2s {b} session.delete") == "+OK session deleted"
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    assert orjson.loads(disconnect["_body"])["reason"] == "session.delete"
    no_leftovers(fs, esl, b)
    api(esl, f"uuid_kill {a}")
    esl.wait(0.5)
    echo = loud(recorded(record))
    assert len(echo) > 8000 * 2 * 0.3, "the caller heard no model audio"
    assert abs(dominant_freq(echo[: 8000 * 2 * 1], 8000) - 440) < 8
    assert KEY not in fs.log_text()


def switch_thread_names(fs):
    names = set()
    for comm in Path(f"/proc/{fs.pid}/task").glob("*/comm"):
        try:
            names.add(comm.read_text().strip())
        except OSError:
            pass   # a thread that ended meanwhile
    return names


def test_unicast_parked_call_audio_both_ways_barge_in_recreate_and_hangup(fs, esl, server):
    a, b, record = new_call(fs, esl, "unicast", "park_unicast")
    def connects():
        return sum(1 for e in list(esl.events)
                   if e.get("Event-Subclass") == "openai_s2s::connect" and e.get("Unique-ID") == b)

    for round_ in range(2):   # the second session reuses the switch's unicast connection
        mark, seen = len(server.connections), connects()
        reply = api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
        assert reply.startswith("+OK connecting"), reply
        deadline = time.monotonic() + 10
        while connects() <= seen and time.monotonic() < deadline:
            esl.wait(0.05)
        assert connects() > seen
        assert server.wait_for(lambda: len(server.connections) > mark)
        conn = server.connections[mark]
        api(esl, f"uuid_openai_s2s {b} client.event "
                 f"{{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
        api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
        assert server.wait_for(lambda: len(loud(uplink_audio(conn))) > 24000 * 2 * 0.5, 10)
        assert abs(dominant_freq(loud(uplink_audio(conn)), 24000) - 440) < 5
        assert server.wait_for(lambda: session_status(esl, b)["media"].get("frames_written", 0) > 10, 10)
        status = session_status(esl, b)
        assert status["media"]["media"] == "unicast" and status["media"]["frames_read"] > 50
        # the media loop sends what it takes: with only unicast calls there is no uplink pump
        threads = switch_thread_names(fs)
        assert "s2s-media" in threads and "s2s-uplink" not in threads, threads
        print("unicast media:", status["media"], "latency:", status["latency_ms"])
        if round_ == 0:
            server.reply, server.speed = "tone", 1.5
            try:
                api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"response.create\"}}")
                esl.wait(0.5)
                api(esl, f"uuid_broadcast {a} tone_stream://%(500,0,300) aleg")
                assert server.wait_for(lambda: conn.truncations, 10)
                counters = session_status(esl, b)["counters"]
                assert counters["barge_ins"] >= 1 and counters["frames_after_barge_in"] <= 1
            finally:
                server.reply, server.speed = "echo", 4.0
            esl.wait(0.6)   # the 300 Hz barge-in has ended: the next session hears only its own tone
            assert fs.cli(f"uuid_openai_s2s {b} session.delete") == "+OK session deleted"
            assert api(esl, f"uuid_getvar {b} openai_s2s_unicast").startswith("127.0.0.1:")
    api(esl, f"uuid_kill {a}")         # hang up while the second session's audio flows
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b
                            and orjson.loads(e["_body"])["reason"] == "hangup")
    assert disconnect is not None
    deadline = time.monotonic() + 5
    while orjson.loads(fs.cli("uuid_openai_s2s status")[4:])["threads"] and time.monotonic() < deadline:
        esl.wait(0.1)
    no_leftovers(fs, esl, b)
    echo = loud(recorded(record))
    assert len(echo) > 8000 * 2 * 0.3, "the caller heard no model audio"
    assert abs(dominant_freq(echo[: 8000 * 2 * 1], 8000) - 440) < 8
    assert KEY not in fs.log_text()


def test_hangup_on_the_media_bug_ends_the_session_and_the_channel(fs, esl, server):
    """The capture bug is locked against the switch's removal at hangup: the session's own
    destruction still takes it, and nothing holds the channel."""
    a, b, _ = new_call(fs, esl, "hangupbug")
    api(esl, f"uuid_setvar {b} openai_s2s_media bug")
    api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert session_status(esl, b)["media"]["media"] == "bug"
    api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
    api(esl, f"uuid_broadcast {a} tone_stream://%(400,0,500) aleg")
    assert server_event(esl, b, "output_audio.playback_started")
    assert session_status(esl, b)["media"]["frames_read"] > 0
    api(esl, f"uuid_kill {a}")         # hang up while audio flows both ways
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    assert disconnect is not None and orjson.loads(disconnect["_body"])["reason"] == "hangup"
    deadline = time.monotonic() + 5
    while api(esl, f"uuid_exists {b}").strip() != "false" and time.monotonic() < deadline:
        esl.wait(0.1)
    assert api(esl, f"uuid_exists {b}").strip() == "false"
    status = orjson.loads(fs.cli("uuid_openai_s2s status")[4:])
    assert status["sessions"] == [] and status["threads"] == 0, status


def test_unicast_refused_with_a_clear_error_where_it_cannot_work(fs, esl, server):
    a, b, _ = new_call(fs, esl, "unicast-silence")          # parked with send_silence_when_idle
    api(esl, f"uuid_setvar {b} openai_s2s_media unicast")
    reply = api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
    assert reply.startswith("-ERR") and "send_silence_when_idle" in reply, reply
    c, d, _ = new_call(fs, esl, "unicast-bridged", "bridged")   # d: in a bridge, not parked
    api(esl, f"uuid_setvar {d} openai_s2s_media unicast")
    reply = api(esl, f"uuid_openai_s2s {d} session.create {server.url} v1/realtime bearer {KEY}")
    assert reply.startswith("-ERR") and "parked channel" in reply, reply
    for uuid in (b, d):
        assert api(esl, f"uuid_getvar {uuid} openai_s2s_unicast") in ("_undef_", "")
        assert api(esl, f"uuid_openai_s2s {uuid} status").startswith("-ERR no openai_s2s session")
    api(esl, f"uuid_kill {a}")
    api(esl, f"uuid_kill {c}")


def test_hangup_ends_the_session(fs, esl, server):
    a, b, _ = new_call(fs, esl, "hangup")
    api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
    api(esl, f"uuid_broadcast {a} tone_stream://%(400,0,500) aleg")
    assert server_event(esl, b, "output_audio.playback_started")
    api(esl, f"uuid_kill {a}")         # hang up while audio flows both ways
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    assert disconnect is not None and orjson.loads(disconnect["_body"])["reason"] == "hangup"
    deadline = time.monotonic() + 5
    while orjson.loads(fs.cli("uuid_openai_s2s status")[4:])["threads"] and time.monotonic() < deadline:
        esl.wait(0.1)
    no_leftovers(fs, esl, b)


def test_remote_close_ends_the_session(fs, esl, server):
    a, b, _ = new_call(fs, esl, "remote")
    server.set_fault("close_after:2")     # session.created, session.updated, then close 1011
    try:
        api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
        assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
        api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
        disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    finally:
        server.set_fault(None)
    assert orjson.loads(disconnect["_body"])["code"] == 1011
    esl.wait(0.3)
    no_leftovers(fs, esl, b)
    api(esl, f"uuid_kill {a}")


def band_power(pcm: bytes, rate: int, freq: float) -> float:
    """Share of the signal's energy within 20 Hz of freq."""
    x = np.frombuffer(pcm, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[np.abs(bins - freq) < 20].sum() / spec.sum())


def test_bridged_call_hears_the_model_mixed_with_the_other_leg(fs, esl, server):
    """Caller A -> B (bridged to C, whose far end D plays a 1000 Hz tone); the module on B
    mixes the model's 440 Hz echo into what B sends A: A hears both."""
    a, b, record = new_call(fs, esl, "bridged", extension="bridged")
    c = channel_var(esl, b, "bridge_uuid")
    d = channel_var(esl, c, "other_loopback_leg_uuid")
    assert not d.startswith("-ERR") and d != "_undef_", (c, d)
    api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
    assert server_event(esl, b, "session.updated")
    api(esl, f"uuid_broadcast {d} tone_stream://%(8000,0,1000) aleg")     # the other party, throughout
    esl.wait(0.5)
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")       # the caller speaks
    assert server_event(esl, b, "output_audio.playback_started")
    assert server_event(esl, b, "output_audio.playback_stopped")
    # the reply over, the playout bug has paused itself: no Python on B's media thread
    deadline = time.monotonic() + 3
    while not session_status(esl, b)["media"]["write_paused"] and time.monotonic() < deadline:
        esl.wait(0.1)
    paused = session_status(esl, b)["media"]
    assert paused["write_paused"] and paused["write_pauses"] >= 1 and paused["can_pause"], paused
    esl.wait(0.5)
    assert session_status(esl, b)["media"]["write_callbacks"] == paused["write_callbacks"]
    # and the next reply resumes it: the caller hears that one too
    def stops():
        return sum(1 for e in list(esl.events) if e.get("Event-Subclass") == "openai_s2s::server_event"
                   and e.get("Unique-ID") == b and '"output_audio.playback_stopped"' in e.get("_body", ""))
    assert stops() == 1
    api(esl, f"uuid_broadcast {a} tone_stream://%(600,0,440) aleg")
    deadline = time.monotonic() + 10
    while stops() < 2 and time.monotonic() < deadline:
        esl.wait(0.1)
    status = session_status(esl, b)
    assert stops() == 2 and status["media"]["frames_written"] > paused["frames_written"] + 20, status["media"]
    assert status["media"]["frames_read"] > paused["frames_read"], status   # the pump kept pulling
    api(esl, f"uuid_openai_s2s {b} session.delete")
    api(esl, f"uuid_kill {a}")
    esl.wait(0.5)
    heard = recorded(record)
    # the 500 ms window where the echo is loudest holds both tones
    x = np.frombuffer(heard, "<i2").astype(float)
    window = 4000
    best = max(range(0, len(x) - window, 400), key=lambda i: band_power(x[i:i + window].astype("<i2").tobytes(), 8000, 440))
    segment = x[best:best + window].astype("<i2").tobytes()
    assert band_power(segment, 8000, 440) > 0.2, status
    assert band_power(segment, 8000, 1000) > 0.2, status
    no_leftovers(fs, esl, b)


def test_dialplan_agent_app(fs, esl, server):
    mark = len(server.connections)
    a, b, record = new_call(fs, esl, "agent", extension="agent")
    connect = wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
    assert connect is not None
    assert server.wait_for(lambda: len(server.connections) > mark)
    conn = server.connections[mark]
    assert server.wait_for(lambda: any(e["type"] == "session.update" for e in conn.received))
    update = [e for e in conn.received if e["type"] == "session.update"][0]
    assert update["session"]["instructions"] == "You are the real-switch test agent."
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}   # 8 kHz loopback
    assert server_event(esl, b, "response.done")          # the greeting
    assert server_event(esl, b, "output_audio.playback_stopped")
    api(esl, f"uuid_kill {a}")
    disconnect = wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    assert disconnect is not None
    esl.wait(0.5)
    greeting = loud(recorded(record))
    assert abs(dominant_freq(greeting, 8000) - 440) < 8     # no caller audio: the server's tone
    no_leftovers(fs, esl, b)


def assert_barge_in_like_the_service(esl, uuid, conn):
    """The server interrupted the response itself (interrupt_response, its default): the module
    sent no cancel, the truncate stayed within the audio sent, and no error event came."""
    assert wait_event(esl, "openai_s2s::server_event", lambda e: e.get("Unique-ID") == uuid and
                      orjson.loads(e["_body"]).get("type") == "response.done" and
                      orjson.loads(e["_body"])["response"]["status"] == "cancelled")
    esl.wait(1.0)    # the caller's turn ends and is answered
    assert not [e for e in conn.received if e["type"] == "response.cancel"]
    truncate = conn.truncations[0]
    assert truncate["audio_end_ms"] <= conn.assistant_audio_ms[truncate["item_id"]]
    errors = [e for e in esl.events if e.get("Unique-ID") == uuid and e.get("Event-Subclass") ==
              "openai_s2s::server_event" and orjson.loads(e["_body"]).get("type") == "error"]
    assert errors == [], errors


def test_dialplan_agent_barge_in(fs, esl, server):
    server.reply, server.speed = "tone", 1.5     # a long greeting to talk over
    try:
        mark = len(server.connections)
        a, b, record = new_call(fs, esl, "agent-barge", extension="agent")
        assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b)
        assert server.wait_for(lambda: len(server.connections) > mark)
        conn = server.connections[mark]
        assert server_event(esl, b, "output_audio.playback_started")
        esl.wait(0.4)
        api(esl, f"uuid_broadcast {a} tone_stream://%(500,0,300) aleg")
        interrupted = wait_event(esl, "openai_s2s::server_event", lambda e: e.get("Unique-ID") == b and
                                 orjson.loads(e["_body"]).get("completion_reason") == "interrupted")
        assert interrupted is not None
        assert server.wait_for(lambda: conn.truncations, 5)
        assert_barge_in_like_the_service(esl, b, conn)
        status = session_status(esl, b)
        assert status["counters"]["barge_ins"] == 1 and status["counters"]["frames_after_barge_in"] <= 1
    finally:
        server.reply, server.speed = "echo", 4.0
    api(esl, f"uuid_kill {a}")
    assert wait_event(esl, "openai_s2s::disconnect", lambda e: e.get("Unique-ID") == b)
    no_leftovers(fs, esl, b)


def test_delete_while_the_server_stalls_the_upgrade(fs, esl):
    """A session.delete answers at once and the switch hears connect_failed, once, before it."""
    from hostile import HostileServer
    with HostileServer(lambda conn: conn.sock.recv(1)) as stalling:
        a, b, _ = new_call(fs, esl, "stalled")
        api(esl, f"uuid_setvar {b} openai_s2s_connect_timeout 30")
        assert api(esl, f"uuid_openai_s2s {b} session.create {stalling.url} v1/realtime bearer {KEY}").startswith("+OK")
        deadline = time.monotonic() + 5
        while not stalling.conns and time.monotonic() < deadline:
            esl.wait(0.05)
        started = time.monotonic()
        assert api(esl, f"uuid_openai_s2s {b} session.delete") == "+OK session deleted"
        assert time.monotonic() - started < 5, "session.delete waited for the connect"
        told = wait_event(esl, "openai_s2s::connect_failed", lambda e: e.get("Unique-ID") == b)
        assert told is not None and orjson.loads(told["_body"]) == {"reason": "session.delete"}
        esl.wait(0.5)
        assert not [e for e in esl.events if e.get("Unique-ID") == b
                    and e.get("Event-Subclass") in ("openai_s2s::connect", "openai_s2s::disconnect")]
        api(esl, f"uuid_kill {a}")
        no_leftovers(fs, esl, b)


def test_shutdown_with_sessions_active(fs, esl, server):
    """Last: shut the switch down with 50 live sessions; it must exit cleanly."""
    calls = [new_call(fs, esl, f"shutdown{i}") for i in range(50)]
    for a, b, _ in calls:
        api(esl, f"uuid_openai_s2s {b} session.create {server.url} v1/realtime bearer {KEY}")
    for a, b, _ in calls:
        assert wait_event(esl, "openai_s2s::connect", lambda e, b=b: e.get("Unique-ID") == b, timeout=20)
        api(esl, f"uuid_openai_s2s {b} client.event {{\"type\":\"session.update\",\"session\":{{\"type\":\"realtime\"}}}}")
    assert fs.stop(timeout=40), "the switch did not exit by itself:\n" + fs.log_tail()
    log = fs.log_text()
    assert "Segmentation" not in log and "Fatal Python error" not in log
    assert KEY not in log


def test_a_switch_without_realtime_scheduling_is_named_in_status_and_the_log(server, tmp_path):
    """Started with -np the switch stays in SCHED_OTHER: the module says so once, at its start."""
    switch = realswitch.RealSwitch(tmp_path / "fs-np", dialplan(server.url), env={"OPENAI_API_KEY": KEY},
                                   args=["-np"])
    switch.start()
    try:
        assert switch.wait_for_api()
        status = switch.cli("uuid_openai_s2s status")
        assert orjson.loads(status[4:])["scheduling"] == {"policy": "other", "priority": 0}, status
        switch.cli("uuid_openai_s2s status")
        log = switch.log_path.read_text()
        assert log.count("FreeSWITCH runs without realtime scheduling (SCHED_OTHER)") == 1, log[-2000:]
    finally:
        switch.stop()
