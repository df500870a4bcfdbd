"""Unicast media (openai_s2s.unicast): the module's media loop against a stand-in for the switch's
side of a unicast connection.

What the double fakes: activating unicast and the park loop. It is a real UDP socket on
loopback that sends caller frames the way switch_ivr_park does (one L16 datagram a frame) and
receives what the loop sends, the way the switch's unicast thread does. Whether FreeSWITCH
really behaves so is tests/test_realswitch.py's job.
"""
import itertools
import socket
import threading
import time

import pytest
from engine_harness import wait_until

from openai_s2s.switch import unicast


class SwitchSide:
    """The channel: uuid, rate, frame_samples, start_unicast, unicast_alive."""

    def __init__(self, uuid="call-1", rate=8000, frame_samples=160, refuse=None):
        self.uuid, self.rate, self.frame_samples = uuid, rate, frame_samples
        self.refuse = refuse
        self.alive = True
        self.sock = None
        self.module_port = None

    def variable(self, name):
        return None

    def start_unicast(self, host, port, avoid=()):
        self.avoided = avoid
        if self.refuse:
            raise RuntimeError(self.refuse)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(2)
        self.module_port = port
        return self.sock.getsockname()[1]

    def unicast_alive(self):
        return self.alive

    def send(self, pcm):
        self.sock.sendto(pcm, ("127.0.0.1", self.module_port))

    def receive(self, count):
        return [self.sock.recv(8192) for _ in range(count)]


class Engine:
    """What the session gives attach(): a capture sink and a playout source."""

    def __init__(self, frames=()):
        self.captured = []
        self.stamps = []        # (the capture time given, when capture ran)
        self.frames = list(frames)
        self.playout_calls = 0
        self.closed = 0
        self.got = threading.Event()
        self.want = 0

    def capture(self, pcm, at=None):
        self.captured.append(pcm)
        self.stamps.append((at, time.monotonic()))
        if len(self.captured) >= self.want:
            self.got.set()

    def playout(self):
        self.playout_calls += 1
        return self.frames.pop(0) if self.frames else None

    def on_closed(self):
        self.closed += 1


def _frame(i, size=320):
    return bytes([i % 256]) * size


@pytest.fixture
def loop():
    return unicast.MediaLoop()


def _attach(loop, switch, engine):
    call = unicast.UnicastCall(switch, loop)
    call.attach(engine.capture, engine.playout, engine.on_closed)
    return call


def test_caller_frames_reach_capture_in_order(loop):
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    engine.want = 5
    for i in range(5):
        switch.send(_frame(i))
    assert engine.got.wait(3)
    assert engine.captured == [_frame(i) for i in range(5)]
    assert call.stats()["frames_read"] == 5
    call.detach()


@pytest.mark.skipif(unicast._RECVMSG is None, reason="kernel receive times need recvmsg on 64-bit Linux")
def test_a_caller_frame_is_stamped_when_it_reached_the_socket_not_when_the_loop_woke(loop):
    """Frames of 0.5 s and no uplink: the loop sleeps until the call's next tick. A
    frame that waited in the socket meanwhile keeps the kernel's time of its arrival, so the
    uplink's latency counts its wait."""
    switch, engine = SwitchSide(frame_samples=4000), Engine()
    call = _attach(loop, switch, engine)
    assert wait_until(lambda: call.ticks >= 1, 5)      # a tick passed: the next is 0.5 s off
    engine.want = 1
    sent = time.monotonic()
    switch.send(_frame(1, size=8000))
    assert engine.got.wait(5)
    at, taken = engine.stamps[0]
    assert taken - sent > 0.2, "the loop woke for the datagram: nothing to measure"
    assert at is not None and sent - 0.005 <= at <= sent + 0.05, (at - sent, taken - sent)
    call.detach()


def test_a_call_that_a_response_moved_off_the_grid_comes_back_a_quarter_frame_a_frame(loop):
    """The loop wakes once a frame time for every call on its grid; a response's first frame
    goes at the next quarter frame, and the call then returns to the grid, each frame at most a
    quarter frame later than its time and never sooner."""
    e, period = loop._epoch, 0.02
    call = unicast.UnicastCall(SwitchSide(), loop)
    call._playout = lambda: _frame(1)
    loop.send = lambda address, port, pcm: True
    call._active = lambda: True
    call.due = e + 100 * period + period / 4          # a quarter slot, as _reschedule leaves it
    sent = []
    for _ in range(6):
        now = call.due
        call._serve(now)
        sent.append(now)
    gaps = [round(b - a, 6) for a, b in zip(sent, sent[1:])]
    assert gaps[:3] == [0.025, 0.025, 0.025] and gaps[3:] == [0.02, 0.02]
    assert call.due == pytest.approx(loop.next_tick(call.due, period))   # on the grid


def test_a_silent_call_off_the_grid_goes_back_to_it_at_once(loop):
    e, period = loop._epoch, 0.02
    call = unicast.UnicastCall(SwitchSide(), loop)
    call._playout = lambda: None
    call.due = e + 100 * period + 3 * period / 4
    call._serve(call.due)
    assert call.due == pytest.approx(e + 102 * period)   # its next grid tick, not 101.75


def test_model_frames_go_to_the_switch_in_order_one_per_playout_call(loop):
    frames = [_frame(i) for i in range(10)]
    switch, engine = SwitchSide(), Engine(frames)
    call = _attach(loop, switch, engine)
    assert switch.receive(10) == frames
    assert wait_until(lambda: engine.playout_calls > 10)   # it goes on asking once the model is silent
    stats = call.stats()
    assert stats["frames_written"] == 10 and stats["send_failures"] == 0
    assert stats["ticks"] == engine.playout_calls or stats["ticks"] == engine.playout_calls + 1
    call.detach()


def test_two_calls_are_told_apart_by_port(loop):
    first, second = SwitchSide("a"), SwitchSide("b")
    one, two = Engine([b"A" * 320]), Engine([b"B" * 320])
    calls = [_attach(loop, first, one), _attach(loop, second, two)]
    # the second was told which port the first holds, so that it never gets the same
    assert second.avoided == {first.sock.getsockname()[1]}
    one.want = two.want = 1
    second.send(b"b" * 320)
    first.send(b"a" * 320)
    assert one.got.wait(3) and two.got.wait(3)
    assert one.captured == [b"a" * 320] and two.captured == [b"b" * 320]
    assert first.receive(1) == [b"A" * 320] and second.receive(1) == [b"B" * 320]
    for call in calls:
        call.detach()


def test_after_detach_returns_nothing_of_the_call_runs(loop):
    other = _attach(loop, SwitchSide("other"), Engine())   # keeps the loop running
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    assert wait_until(lambda: engine.playout_calls > 2)
    call.detach()
    calls_then, dropped_then = engine.playout_calls, loop.datagrams_dropped
    switch.send(_frame(1))
    assert wait_until(lambda: loop.datagrams_dropped > dropped_then)   # the loop got it, and dropped it
    assert engine.playout_calls == calls_then and engine.captured == []
    call.detach()   # twice is harmless
    other.detach()
    assert wait_until(lambda: not loop.running)   # no call, no thread


def test_frames_left_from_a_deleted_session_are_not_given_to_the_next(loop):
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    call.detach()
    assert wait_until(lambda: not loop.running)
    switch.send(b"stale" * 64)                 # the parked channel goes on sending meanwhile
    time.sleep(0.05)
    again = unicast.UnicastCall(switch, loop)
    switch.start_unicast = lambda host, port, avoid: switch.sock.getsockname()[1]   # the same connection
    fresh = Engine()
    fresh.want = 1
    again.attach(fresh.capture, fresh.playout, fresh.on_closed)
    switch.send(b"fresh" * 64)
    assert fresh.got.wait(3)
    assert fresh.captured == [b"fresh" * 64]
    again.detach()


def test_a_call_that_left_park_is_closed_once_and_no_longer_served(loop):
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    switch.alive = False
    assert wait_until(lambda: engine.closed == 1)
    served = engine.playout_calls
    time.sleep(unicast.CHECK_INTERVAL + 0.1)
    assert engine.closed == 1 and engine.playout_calls == served
    call.detach()   # the session's close() after the closed callback: nothing left to remove


def test_a_failing_call_does_not_stop_the_others(loop):
    bad_switch, good_switch = SwitchSide("bad"), SwitchSide("good")
    bad, good = Engine(), Engine([_frame(i) for i in range(5)])

    def broken():
        raise ValueError("boom")
    bad.playout = broken
    calls = [_attach(loop, bad_switch, bad), _attach(loop, good_switch, good)]
    assert good_switch.receive(5) == [_frame(i) for i in range(5)]
    assert calls[0].stats()["errors"] > 0 and calls[1].stats()["errors"] == 0
    for call in calls:
        call.detach()


def test_attach_that_the_switch_refuses_registers_nothing(loop):
    switch, engine = SwitchSide(refuse="media=unicast needs a parked channel"), Engine()
    call = unicast.UnicastCall(switch, loop)
    with pytest.raises(RuntimeError, match="parked"):
        call.attach(engine.capture, engine.playout, engine.on_closed)
    assert loop._calls == {}
    call.detach()


def test_calls_of_one_ptime_share_the_loop_s_ticks(loop):
    period = 0.02
    ticks = {round(loop.next_tick(loop._epoch + offset, period) - loop._epoch, 9)
             for offset in (0.0001, 0.005, 0.0199)}
    assert ticks == {0.02}
    assert loop.next_tick(loop._epoch + 0.02, period) == pytest.approx(loop._epoch + 0.02)


def _idle_call(loop, last_sent, due):
    call = unicast.UnicastCall(SwitchSide(), loop)
    call._last_sent, call.due = last_sent, due
    call.starts = 1
    return call


def test_audio_that_starts_between_ticks_goes_at_the_next_quarter_frame(loop):
    e = loop._epoch
    call = _idle_call(loop, last_sent=e - 10, due=e + 0.040)
    call._reschedule(e + 0.0213)
    assert call.due == pytest.approx(e + 0.025)   # not the grid's 0.040
    assert call._starts_seen == call.starts


def test_audio_that_starts_keeps_a_frame_time_after_the_last_frame_sent(loop):
    e = loop._epoch
    call = _idle_call(loop, last_sent=e + 0.0102, due=e + 0.040)
    call._reschedule(e + 0.0213)
    assert call.due == pytest.approx(e + 0.035)   # the first slot 20 ms after 10.2 ms
    # a call already due sooner keeps its time
    call = _idle_call(loop, last_sent=e - 10, due=e + 0.022)
    call._reschedule(e + 0.0213)
    assert call.due == pytest.approx(e + 0.022)


def test_audio_ready_wakes_the_loop_before_the_calls_next_tick(loop):
    """Frames of 2 s: the kicked frame goes within a quarter frame, a grid tick could be 2 s away."""
    switch, engine = SwitchSide(frame_samples=16000), Engine()
    call = _attach(loop, switch, engine)
    assert wait_until(lambda: engine.playout_calls >= 1, 5)   # a tick passed: the next is 2 s off
    engine.frames.append(_frame(7))   # any size: the loop sends what playout gives
    call.audio_ready()
    switch.sock.settimeout(1.0)
    assert switch.receive(1) == [_frame(7)]
    call.detach()


def test_sockaddr_in_layout():
    addr = unicast.sockaddr_in("127.0.0.1", 0x1234)
    # the port in network order and the address; the family's byte order is proven by the
    # datagrams that reach SwitchSide in the tests above
    assert len(addr) == 16 and addr[2:4] == b"\x12\x34" and addr[4:8] == b"\x7f\x00\x00\x01"


def test_after_a_codec_change_frames_of_another_size_are_neither_taken_nor_answered(loop):
    """A re-INVITE changes the size of the park loop's datagrams: the module's frames, of the
    old size, would be partial frames there, so it sends none until the size is back."""
    switch, engine = SwitchSide(), Engine([_frame(i) for i in range(200)])
    call = _attach(loop, switch, engine)
    switch.send(_frame(1))
    assert wait_until(lambda: call.stats()["frames_written"] > 3)
    switch.sock.settimeout(0.2)
    for _ in range(3):
        switch.send(_frame(2, size=640))          # 16 kHz now
    assert wait_until(lambda: call.stats()["frames_mismatched"] == 3)
    time.sleep(0.1)
    while True:                                   # what was already on its way
        try:
            switch.sock.recv(8192)
        except socket.timeout:
            break
    written = call.stats()["frames_written"]
    time.sleep(0.2)
    assert call.stats()["frames_written"] == written, "it kept sending frames of the old size"
    assert _frame(2, size=640) not in engine.captured
    switch.send(_frame(3))                        # back to the call's size: it goes on
    assert wait_until(lambda: call.stats()["frames_written"] > written)
    call.detach()


class Sender:
    """A call's uplink as the pump sees it (call/pump.py's Pumped): what it had on each pump."""

    def __init__(self, engine, fail=False):
        self.engine, self.fail = engine, fail
        self.seen = []          # (thread name, frames captured by then)
        self.waits = set()      # the wait argument of each pump
        self.failures = []

    def pump(self, now, wait=True):
        self.waits.add(wait)
        self.seen.append((threading.current_thread().name, len(self.engine.captured)))
        if self.fail:
            raise RuntimeError("boom")

    def pump_failed(self, exc):
        self.failures.append(exc)

    def waiting_since(self):
        return float("inf")


def test_the_loop_is_its_calls_uplink_pump_and_sends_a_frame_in_the_pass_that_took_it(loop):
    """The thread that takes a caller's frame sends it: no other thread, no later pass."""
    switch, engine = SwitchSide(), Engine()
    captured_in = []    # the loop's pass count when each frame was taken
    engine_capture = engine.capture

    def capture(pcm, at=None):
        captured_in.append(loop._passes)
        engine_capture(pcm, at)
    call = unicast.UnicastCall(switch, loop)
    call.attach(capture, engine.playout, engine.on_closed)
    sender = Sender(engine)
    record = sender.pump
    sender.pump = lambda now, wait=True: (record(now, wait), sender.seen.append(("pass", loop._passes)))
    call.uplink_pump.add(sender)
    assert wait_until(lambda: sender.seen)
    assert {name for name, _ in sender.seen[::2]} == {"s2s-media"}
    assert sender.waits == {False}      # the media loop never waits on a socket
    engine.want = 3
    for i in range(3):
        switch.send(_frame(i))
    assert engine.got.wait(3)
    assert wait_until(lambda: ("pass", captured_in[-1]) in sender.seen)
    for taken in captured_in:   # each frame: the sender was pumped in the pass that took it, after it
        at = sender.seen.index(("pass", taken))
        assert sender.seen[at - 1][1] >= captured_in.index(taken) + 1
    call.uplink_pump.remove(sender)
    pumped = len(sender.seen)
    time.sleep(0.1)
    assert len(sender.seen) <= pumped + 2   # a pass under way may pump it once more, then never
    call.detach()
    assert wait_until(lambda: not loop.running)


def test_the_loop_pumps_every_uplink_wait_even_while_its_calls_have_no_frame_due(loop):
    """Housekeeping runs on the uplink's pump: it must not wait for the next 2 s frame."""
    switch, engine = SwitchSide(frame_samples=16000), Engine()
    call = _attach(loop, switch, engine)
    sender = Sender(engine)
    call.uplink_pump.add(sender)
    time.sleep(0.3)
    assert len(sender.seen) >= 0.3 / unicast.UPLINK_WAIT / 2
    call.uplink_pump.remove(sender)
    call.detach()


def test_a_failing_uplink_is_told_and_the_loop_goes_on_serving_media(loop):
    switch, engine = SwitchSide(), Engine([_frame(i) for i in range(5)])
    call = _attach(loop, switch, engine)
    bad = Sender(engine, fail=True)
    call.uplink_pump.add(bad)
    assert switch.receive(5) == [_frame(i) for i in range(5)]
    assert wait_until(lambda: len(bad.failures) >= 3)
    assert call.stats()["errors"] == 0
    call.uplink_pump.remove(bad)
    call.detach()


def test_an_uplink_left_after_its_call_keeps_the_loop_until_removed(loop):
    """A session's close removes its uplink before it detaches the media, but a goodbye sent
    between the two must still go out: the loop runs while it has an uplink."""
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    sender = Sender(engine)
    call.uplink_pump.add(sender)
    call.detach()
    pumped = len(sender.seen)
    assert wait_until(lambda: len(sender.seen) > pumped + 2)
    assert loop.running
    call.uplink_pump.remove(sender)
    assert wait_until(lambda: not loop.running)


def _slow_uplinks(loop, call, count, log):
    """``count`` uplinks whose pump takes 1 ms and logs ("uplink", pass, index)."""
    class Slow:
        def __init__(self, index):
            self.index = index

        def pump(self, now, wait=True):
            time.sleep(0.001)
            log.append(("uplink", loop._passes, self.index))

        def pump_failed(self, exc):
            raise AssertionError(exc)

        def waiting_since(self):
            return float(self.index)   # the first added has waited longest
    slow = [Slow(i) for i in range(count)]
    for member in slow:
        call.uplink_pump.add(member)
    return slow


def _beside_the_passes(call, slow, log, step, pause, uplinks):
    """Runs ``step`` every ``pause`` seconds on a thread of its own until the loop has logged
    ``uplinks`` uplink sends; then removes the slow uplinks and detaches the call."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            step()
            time.sleep(pause)
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert wait_until(lambda: sum(1 for e in log if e[0] == "uplink") >= uplinks)
    finally:
        stop.set()
        thread.join(5)
        for member in slow:
            call.uplink_pump.remove(member)
        call.detach()


def _passes_logged(log):
    """The log by pass: {pass: [entries in order]}."""
    by_pass = {}
    for entry in log:
        by_pass.setdefault(entry[1], []).append(entry)
    return by_pass


def _between_uplinks(log, kind, uplinks):
    """For each pass that pumped all ``uplinks``: whether a ``kind`` entry came after its first
    uplink and before its last."""
    found = []
    for entries in _passes_logged(log).values():
        kinds = [e[0] for e in entries]
        if kinds.count("uplink") == uplinks:
            first, last = kinds.index("uplink"), len(kinds) - 1 - kinds[::-1].index("uplink")
            found.append(kind in kinds[first:last])
    return found


def test_a_frame_that_falls_due_while_the_loop_sends_the_uplinks_goes_out_between_them(loop):
    """The uplinks' sends take time at 100 calls: the caller's frames must not wait for all of them."""
    log = []
    switch, engine = SwitchSide(), Engine()
    engine_playout = engine.playout

    def playout():
        log.append(("serve", loop._passes))
        return engine_playout()
    call = unicast.UnicastCall(switch, loop)
    call.attach(engine.capture, playout, engine.on_closed)
    slow = _slow_uplinks(loop, call, 30, log)     # 30 ms of sends a pass: longer than a frame
    assert wait_until(lambda: sum(1 for e in log if e[0] == "uplink") >= 4 * 30)
    for member in slow:
        call.uplink_pump.remove(member)
    call.detach()
    # in some pass a frame was served after the pass's first uplink and before its last
    assert any(_between_uplinks(log, "serve", 30)), log[:80]


def test_a_caller_frame_that_arrives_while_the_loop_sends_the_uplinks_is_taken_before_the_later_groups(loop):
    """A frame that reaches the socket just after the loop woke must not wait a whole frame time
    for the next pass when the pass still has uplinks to send: it is taken between two groups."""
    log = []
    switch, engine = SwitchSide(), Engine()
    engine_capture = engine.capture

    def capture(pcm, at=None):
        log.append(("capture", loop._passes))
        engine_capture(pcm, at)
    call = unicast.UnicastCall(switch, loop)
    call.attach(capture, engine.playout, engine.on_closed)
    slow = _slow_uplinks(loop, call, 30, log)     # 30 ms of sends a pass, in three groups
    frames = itertools.count()
    # a caller frame every 7 ms: some arrive while a pass sends its uplinks
    _beside_the_passes(call, slow, log, lambda: switch.send(_frame(next(frames))), 0.007, 6 * 30)
    assert any(_between_uplinks(log, "capture", 30)), log[:120]


def test_the_loop_sends_the_uplinks_whose_audio_has_waited_longest_first(loop):
    """Where a call falls in the pass is part of its uplink latency: the oldest audio goes first."""
    order = []

    class Waiting:
        def __init__(self, since):
            self.since = since

        def pump(self, now, wait=True):
            order.append((loop._passes, self.since))

        def pump_failed(self, exc):
            raise AssertionError(exc)

        def waiting_since(self):
            return self.since
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    members = [Waiting(since) for since in (7.0, 3.0, float("inf"), 0.0, 5.0, 1.0, 9.0, 2.0, 8.0,
                                            4.0, 6.0, 10.0, 0.5, float("inf"), 11.0)]
    for member in members:
        call.uplink_pump.add(member)
    assert wait_until(lambda: len(order) >= 3 * len(members))
    for member in members:
        call.uplink_pump.remove(member)
    call.detach()
    by_pass = {}
    for number, since in order:
        by_pass.setdefault(number, []).append(since)
    whole = [sinces for sinces in by_pass.values() if len(sinces) == len(members)]
    assert whole and all(sinces == sorted(sinces) for sinces in whole), whole[:2]


def test_no_receiver_takes_its_turn_while_a_pass_sends_the_uplinks(loop):
    """The receivers' Python would share the GIL with the pass every 0.5 ms and stretch it (100
    calls: the worst call's uplink p99 up to 61 ms against 43-44 with the receivers held off).
    A receiver that wants its turn during a pass gets it between passes; the loop never waits
    for it."""
    from openai_s2s.call.receiver import TURN
    log = []
    switch, engine = SwitchSide(), Engine()
    call = _attach(loop, switch, engine)
    slow = _slow_uplinks(loop, call, 10, log)     # 10 ms of sends a pass
    def message():   # a receiver's short message, every 2 ms, as a busy receiver has them
        TURN.acquire()
        try:
            log.append(("message", loop._passes))
        finally:
            TURN.release()
    _beside_the_passes(call, slow, log, message, 0.002, 10 * 10)
    between = _between_uplinks(log, "message", 10)
    assert between and not any(between), log[:80]
    assert any(e[0] == "message" for e in log)          # it had its turns: between the passes
    assert TURN.acquire() and TURN.release() is None     # and the turn is left free


def test_a_pass_that_fails_leaves_the_receivers_turn_free(loop, monkeypatch):
    from openai_s2s.call.receiver import TURN

    def broken():
        raise RuntimeError("boom")
    monkeypatch.setattr(loop, "_serve_and_pump", broken)
    monkeypatch.setattr(unicast, "IDLE_WAIT", 0.0)      # no call: no sleep
    with pytest.raises(RuntimeError):
        loop._pass()
    assert TURN._pauses == 0
    got = []
    t = threading.Thread(target=lambda: (TURN.acquire(), got.append(1), TURN.release()))
    t.start()
    t.join(5)
    assert got == [1]
