import time

from openai_s2s.media.playout import PlayoutBuffer

FRAME = 160  # 20 ms at 8 kHz


def pcm(frames, value=1):
    return value.to_bytes(2, "little", signed=True) * (FRAME * frames)


def make(max_ms=1000):
    return PlayoutBuffer(8000, FRAME, max_ms)


def test_frames_come_out_in_order_and_partial_is_padded():
    buf = make()
    assert buf.push(("item1", 0), pcm(2, 5) + pcm(1, 7)[:100], 0.0)
    assert buf.next_frame() == pcm(1, 5)
    assert buf.next_frame() == pcm(1, 5)
    assert buf.next_frame() is None          # partial frame not out until the item ends
    assert buf.underruns == 1                # audio is still streaming: that is an underrun
    buf.end_item()
    last = buf.next_frame()
    assert last[:100] == pcm(1, 7)[:100] and last[100:] == bytes(2 * FRAME - 100)
    assert buf.next_frame() is None and buf.underruns == 1   # done streaming: not an underrun


def test_flush_reports_what_was_heard_of_the_current_item():
    buf = make()
    buf.push(("a", 0), pcm(10), 0.0)
    for _ in range(3):
        buf.next_frame()
    flushed = buf.flush()
    assert flushed.had_audio and flushed.item == ("a", 0)
    assert flushed.heard_ms == 60 and flushed.dropped_frames == 7
    assert buf.next_frame() is None and not buf.active


def test_flush_with_nothing_playing():
    buf = make()
    assert not buf.flush().had_audio
    buf.push(("a", 0), pcm(1), 0.0)
    buf.end_item()
    buf.next_frame()
    flushed = buf.flush()
    assert not flushed.had_audio and flushed.item is None


def test_flush_of_a_new_item_not_yet_heard():
    buf = make()
    buf.push(("a", 0), pcm(1), 0.0)
    buf.end_item()
    buf.next_frame()
    buf.push(("b", 0), pcm(2), 0.0)
    flushed = buf.flush()
    assert flushed.item == ("b", 0) and flushed.heard_ms == 0


def test_overrun_drops_and_counts():
    buf = make(max_ms=100)  # 5 frames
    assert buf.push(("a", 0), pcm(5), 0.0)
    assert not buf.push(("a", 0), pcm(1), 0.0)
    assert buf.overruns == 1 and buf.queued_frames == 5


def test_pause_holds_and_mute_discards():
    buf = make()
    buf.push(("a", 0), pcm(3), 0.0)
    buf.paused = True
    assert buf.next_frame() is None and buf.queued_frames == 3 and buf.underruns == 0
    buf.paused = False
    buf.muted = True
    assert buf.next_frame() is None and buf.queued_frames == 2
    buf.muted = False
    assert buf.next_frame() == pcm(1)


def test_downlink_latency_recorded_for_first_frame_of_each_delta():
    buf = make()
    buf.push(("a", 0), pcm(2), 1.0)
    buf.next_frame()
    buf.next_frame()
    assert len(buf.latencies) == 1


def test_idle_latency_counts_only_deltas_that_found_the_buffer_empty():
    buf = PlayoutBuffer(rate=8000, frame_samples=160, max_ms=10000)
    now = time.monotonic()
    buf.push(("i", 0), bytes(320 * 3), now)        # arrives to an empty buffer
    buf.push(("i", 0), bytes(320 * 3), now)        # queued behind three frames
    for _ in range(6):
        buf.next_frame()
    assert len(buf.latencies) == 2 and len(buf.idle_latencies) == 1


def test_idle_latency_leaves_out_a_delta_that_came_while_the_last_frame_still_played():
    buf = PlayoutBuffer(rate=8000, frame_samples=160, max_ms=10000)
    buf.push(("i", 0), bytes(320), time.monotonic())
    assert buf.next_frame() is not None               # out now: it plays for the next 20 ms
    buf.push(("i", 0), bytes(320), time.monotonic())   # the buffer is empty, but the caller is still hearing
    buf.next_frame()
    assert len(buf.latencies) == 2 and len(buf.idle_latencies) == 1
    buf.next_frame()                                  # an underrun
    time.sleep(0.03)                                  # the last frame has played out
    buf.push(("i", 0), bytes(320), time.monotonic())
    buf.next_frame()
    assert len(buf.idle_latencies) == 2


def test_histogram_quantile_of_write_gaps():
    from openai_s2s.media.meters import histogram_quantile
    hist = [0] * 101
    assert histogram_quantile(hist, 0.5) is None
    hist[20] = 98
    hist[21] = 1
    hist[100] = 1          # one gap of 100 ms or more
    assert histogram_quantile(hist, 0.5) == 20
    assert histogram_quantile(hist, 0.99) == 21
    assert histogram_quantile(hist, 1.0) == 100


def test_a_long_gap_from_a_real_time_server_is_quiet_not_underruns():
    buf = PlayoutBuffer(8000, 160, 2000)
    buf.quiet_after_frames = 5
    frame = b"\x01\x00" * 160
    buf.push(("live-0", 0), frame * 2, 0.0)
    assert buf.next_frame() and buf.next_frame()
    for _ in range(3):                  # a short gap inside speech: underruns, once audio resumes
        assert buf.next_frame() is None
    assert buf.underruns == 0 and buf.active
    buf.push(("live-0", 0), frame, 0.0)
    assert buf.next_frame() and buf.underruns == 3
    for _ in range(40):                 # the model stopped talking: silence
        buf.next_frame()
    assert not buf.active, "no playout in progress while the model is quiet"
    buf.push(("live-0", 0), frame, 0.0)
    assert buf.active and buf.next_frame() and buf.underruns == 3
