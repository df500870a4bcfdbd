"""The benchmark's pure helpers (bench/bench.py is not a test: it needs a real switch): the
shapes' dialplans, naming a call's connection, counting delivered caller audio, and grouping
the switch's threads."""
import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from openai_s2s.tools import testswitch

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench", REPO / "bench" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

URL = "ws://127.0.0.1:8765"


def extensions(xml: str) -> dict:
    root = ET.fromstring(f"<context>{xml}</context>")
    return {e.get("name"): [(a.get("application"), a.get("data")) for a in e.iter("action")]
            for e in root.iter("extension")}


def test_each_shape_originates_to_its_extension():
    assert bench.shape_extension("parked") == "park_esl"
    assert bench.shape_extension("parked", "bug") == "park"
    assert bench.shape_extension("parked", "unicast") == "park_unicast"
    assert bench.shape_extension("agent") == "agent"
    assert bench.shape_extension("bridged") == "bridged"
    with pytest.raises(ValueError):
        bench.shape_extension("conference")


def test_the_shapes_dialplan():
    found = extensions(bench.shape_extensions(URL, "pcm"))
    assert {"park", "park_unicast", "park_esl", "agent", "bridged"} <= set(found)
    # the ESL pattern: nothing but answer and park (no send_silence_when_idle, no media option)
    assert found["park_esl"] == [("answer", None), ("park", None)]
    sets = dict(d.split("=", 1) for app, d in found["agent"] if app == "set")
    assert sets["openai_s2s_host"] == URL
    assert sets["openai_s2s_path"] == f"v1/realtime?model={bench.DEFAULT_MODEL}&bench_call=${{uuid}}"
    assert sets["openai_s2s_audio_format"] == "pcm"
    assert "openai_s2s_media" not in sets
    assert ("python", "openai_s2s") in found["agent"]
    bridge = [d for app, d in found["bridged"] if app == "bridge"]
    assert bridge == ["{loopback_bowout=false}loopback/park/default"]
    pcmu_bug = extensions(bench.shape_extensions(URL, "pcmu", "bug"))["agent"]
    assert ("set", "openai_s2s_media=bug") in pcmu_bug and ("set", "openai_s2s_audio_format=pcmu") in pcmu_bug


def test_a_calls_connection_is_named_by_its_path():
    path = bench.call_path("6f1c-b")
    assert path.startswith(bench.PATH) and bench.call_of(path) == "6f1c-b"
    assert bench.call_of("/v1/realtime?model=x") is None
    stats = {"connections": [
        {"path": bench.call_path("b1"), "appends": 10, "audio_bytes": 9600},
        {"path": "/v1/realtime", "appends": 3, "audio_bytes": 2880},          # not the bench's
        {"path": bench.call_path("b1"), "appends": 1, "audio_bytes": 960, "events_sent": 4},  # b1 reconnected
        {"path": bench.call_path("b2"), "appends": 2, "audio_bytes": 1920, "events_sent": 7}]}
    assert bench.received_by_call(stats) == {"b1": {"appends": 11, "audio_bytes": 10560, "events_sent": 4},
                                             "b2": {"appends": 2, "audio_bytes": 1920, "events_sent": 7}}


def test_wire_frame_bytes():
    assert bench.wire_frame_bytes("pcm") == 960      # 20 ms of 24 kHz 16-bit
    assert bench.wire_frame_bytes("pcmu") == 160     # 20 ms of 8 kHz G.711


def counters(frames_in, dropped=0, dropped_late=0, appends=None):
    return {"frames_in": frames_in, "frames_dropped": dropped + dropped_late,
            "frames_dropped_late": dropped_late, "appends": frames_in if appends is None else appends,
            "bytes_up": frames_in * 960}


def test_delivery_when_everything_arrived():
    d = bench.delivery(counters(500), {"appends": 500, "audio_bytes": 500 * 960}, 960)
    assert (d["captured"], d["delivered"], d["ratio"], d["lost"], d["dropped_frames"]) == \
        (480000, 480000, 1.0, 0, 0)


def test_delivery_allows_the_unfinished_chunk_and_names_what_is_lost():
    # chunk-ms 60: up to two frames may still wait for the third
    held = bench.delivery(counters(500), {"appends": 166, "audio_bytes": 498 * 960}, 960, chunk_ms=60)
    assert held["ratio"] < 1 and held["lost"] == 0
    lost = bench.delivery(counters(500), {"appends": 490, "audio_bytes": 490 * 960}, 960)
    assert lost["lost"] == 10 * 960 and lost["unread"] == 10 * 960   # written, not yet read
    unsent = bench.delivery(dict(counters(500), bytes_up=495 * 960), {"appends": 490, "audio_bytes": 490 * 960}, 960)
    assert unsent["lost"] == 10 * 960 and unsent["unread"] == 5 * 960
    # frames the module dropped are captured and not delivered, and counted apart from lost
    dropped = bench.delivery(counters(500, dropped=5, dropped_late=3),
                             {"appends": 497, "audio_bytes": 497 * 960}, 960)
    assert dropped["captured"] == 505 * 960 and dropped["dropped_frames"] == 8 and dropped["lost"] == 0
    nothing = bench.delivery(counters(100), None, 960)
    assert nothing["delivered"] == 0 and nothing["lost"] == 100 * 960
    assert bench.delivery({}, None, 960)["ratio"] is None


def test_delivery_total():
    calls = [bench.delivery(counters(100), {"appends": 100, "audio_bytes": 96000}, 960),
             bench.delivery(counters(100), {"appends": 50, "audio_bytes": 48000}, 960)]
    total = bench.delivery_total(calls)
    assert total["captured"] == 192000 and total["delivered"] == 144000 and total["ratio"] == 0.75
    assert total["calls_short"] == 1 and total["worst_ratio"] == 0.5 and total["lost"] == 48000


@pytest.mark.parametrize("comm, group", [
    ("s2s-rx-1a2b3c4d", "s2s-rx-*"), ("s2s-rx-ccdbfabb", "s2s-rx-*"), ("s2s-agent-6f1c2d3e", "s2s-agent-*"), ("s2s-media", "s2s-media"),
    ("s2s-uplink", "s2s-uplink"), ("freeswitch", "freeswitch"), ("worker12", "worker*"),
    ("fs-sched-0042", "fs-sched-*"), ("mod_loopback", "mod_loopback")])
def test_thread_group(comm, group):
    assert bench.thread_group(comm) == group


def test_threads_by_group():
    before = {1: ("freeswitch", 10.0), 2: ("freeswitch", 5.0), 3: ("s2s-rx-aaaa1111", 1.0)}
    after = {1: ("freeswitch", 12.0), 2: ("freeswitch", 5.5), 3: ("s2s-rx-aaaa1111", 1.5),
             4: ("s2s-rx-bbbb2222", 0.5)}        # started in the window
    groups = bench.threads_by_group(before, after, window=10.0)
    assert list(groups) == ["freeswitch", "s2s-rx-*"]     # busiest first
    assert groups["freeswitch"] == {"cpu_pct": 25.0, "threads": 2, "max_pct": 20.0}
    assert groups["s2s-rx-*"] == {"cpu_pct": 10.0, "threads": 2, "max_pct": 5.0}


def test_module_params_replace_the_files_value(tmp_path):
    switch = testswitch.RealSwitch(tmp_path, "")
    switch.write_conf()
    switch.set_module_params(chunk_ms="60", tls_ca_file="/x/ca.pem")
    text = (switch.conf / "autoload_configs" / "openai_s2s.conf.xml").read_text()
    assert text.count('name="chunk-ms"') == 1 and '<param name="chunk-ms" value="60"/>' in text
    # the sample's commented-out tls-ca-file stays a comment; the setting is added in force
    assert '\n    <param name="tls-ca-file" value="/x/ca.pem"/>' in text
    assert '<!-- <param name="tls-ca-file" value="/x/ca.pem"/>' not in text


def test_threads_python_knows_are_told_apart_by_their_python_name():
    before = {1: ("freeswitch", 1.0), 2: ("freeswitch", 1.0), 3: ("freeswitch", 1.0)}
    after = {1: ("freeswitch", 2.0), 2: ("freeswitch", 1.5), 3: ("freeswitch", 1.2)}
    groups = bench.threads_by_group(before, after, 10.0, {1: "s2s-agent-6f1c2d3e", 2: "Dummy-12"})
    assert groups == {"freeswitch/py:s2s-agent-*": {"cpu_pct": 10.0, "threads": 1, "max_pct": 10.0},
                      "freeswitch/py:Dummy-*": {"cpu_pct": 5.0, "threads": 1, "max_pct": 5.0},
                      "freeswitch": {"cpu_pct": 2.0, "threads": 1, "max_pct": 2.0}}
