"""``uuid_openai_s2s metrics``: Prometheus text that the official parser reads, counters that
only grow as sessions end, and labels from fixed sets only."""
import socket

from prometheus_client.parser import text_string_to_metric_families

from engine_harness import SEED_SESSION_UPDATE, silence, tone, wait_until
from openai_s2s.control import commands
from openai_s2s.media.meters import GapMeter, LatencyHistogram, gap_histogram


def scrape(h):
    text = h.api("metrics")
    families = {f.name: f for f in text_string_to_metric_families(text + "\n")}
    return text, families


def value(families, family, sample=None, **labels):
    for s in families[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, sample, labels))


def test_metrics_parse_and_count_a_call_that_came_and_went(h):
    _, before = scrape(h)
    base_in = value(before, "openai_s2s_caller_frames", "openai_s2s_caller_frames_total")
    base_ended = value(before, "openai_s2s_sessions_ended", "openai_s2s_sessions_ended_total")
    call = h.call("m-1")
    h.create("m-1")
    h.connected("m-1")
    h.send("m-1", SEED_SESSION_UPDATE)
    call.say(tone(440, 8000, 0.6) + silence(8000, 0.8))
    assert h.wait_server_event("m-1", "output_audio.playback_started", timeout=10)
    _, live = scrape(h)
    assert value(live, "openai_s2s_sessions", state="connected", media="bug") >= 1
    live_in = value(live, "openai_s2s_caller_frames", "openai_s2s_caller_frames_total")
    assert live_in > base_in
    assert value(live, "openai_s2s_uplink_latency_seconds", "openai_s2s_uplink_latency_seconds_count") > 0
    assert h.api("m-1 session.delete").startswith("+OK")
    _, after = scrape(h)
    # the ended session's counts stay in the totals: counters never go down
    assert value(after, "openai_s2s_caller_frames", "openai_s2s_caller_frames_total") >= live_in
    assert value(after, "openai_s2s_sessions_ended", "openai_s2s_sessions_ended_total") == base_ended + 1
    assert value(after, "openai_s2s_model_frames", "openai_s2s_model_frames_total") > 0
    assert value(after, "openai_s2s_audio_bytes", "openai_s2s_audio_bytes_total", direction="down") > 0
    assert value(after, "openai_s2s_sessions", state="connected", media="bug") == 0
    # the write-gap histogram is cumulative and ends at +Inf == count
    gaps = [s for s in after["openai_s2s_write_gap_seconds"].samples if s.name.endswith("_bucket")]
    counts = [s.value for s in gaps]
    assert counts == sorted(counts) and gaps[-1].labels["le"] == "+Inf"
    assert counts[-1] == value(after, "openai_s2s_write_gap_seconds", "openai_s2s_write_gap_seconds_count") > 0


def test_connect_failures_are_counted_by_kind_with_no_host_in_the_label(h):
    _, before = scrape(h)
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h.call("m-2")
    h.create("m-2", host=f"ws://127.0.0.1:{port}")
    assert h.switch.wait_event("openai_s2s::connect_failed", lambda hd, b: hd.get("Unique-ID") == "m-2", 10)
    assert wait_until(lambda: h.api("m-2 status").startswith("-ERR"))
    text, after = scrape(h)
    refused_before = dict((s.labels["reason"], s.value) for s in before["openai_s2s_connect_failures"].samples)
    refused_after = dict((s.labels["reason"], s.value) for s in after["openai_s2s_connect_failures"].samples)
    assert refused_after.get("refused", 0) == refused_before.get("refused", 0) + 1, refused_after
    assert "127.0.0.1" not in text and str(port) not in text


def test_metrics_is_exactly_the_word_and_anything_else_is_one_line():
    assert commands.execute("metrics now", None).count("\n") == 0
    assert commands.execute(b"metrics", None).startswith("# HELP")


def test_histograms_add_and_convert_from_the_gap_meter():
    meter = GapMeter()
    for t in (1.0, 1.02, 1.04, 1.10):      # gaps of 20, 20 and 60 ms
        meter.frame(t)
    histogram = gap_histogram(meter)
    assert sum(histogram.counts) == 3
    bounds = histogram.bounds
    assert histogram.counts[bounds.index(0.02)] == 2 and histogram.counts[bounds.index(0.06)] == 1
    total = LatencyHistogram()
    total.add(histogram)
    total.add(histogram)
    assert sum(total.counts) == 6 and abs(total.sum - 2 * histogram.sum) < 1e-9
