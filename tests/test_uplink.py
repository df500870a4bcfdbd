"""The uplink pump: one thread for every call's sends, which no call can hold up."""
import socket
import threading

import pytest

from openai_s2s.call.pump import UplinkPump
from openai_s2s.realtime.transport import send_room, unsent_bytes
from engine_harness import wait_until


class Recorder:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.pumps = 0
        self.failures = []

    def pump(self, now: float) -> None:
        self.pumps += 1
        if self.fail:
            raise RuntimeError("boom")

    def pump_failed(self, exc: BaseException) -> None:
        self.failures.append(exc)


@pytest.fixture
def pump():
    p = UplinkPump(tick=0.005, name="s2s-uplink-test")
    yield p
    for s in list(p._members):
        p.remove(s)
    assert wait_until(lambda: not p.running, 5)


def test_a_failing_session_is_told_and_the_others_go_on(pump):
    good, bad = Recorder(), Recorder(fail=True)
    pump.add(good)
    pump.add(bad)
    assert wait_until(lambda: len(bad.failures) >= 3 and good.pumps >= 3, 5)
    assert isinstance(bad.failures[0], RuntimeError)
    assert pump.running


def test_the_thread_ends_with_the_last_session_and_comes_back(pump):
    first = Recorder()
    pump.add(first)
    assert wait_until(lambda: first.pumps > 0, 5)
    pump.remove(first)
    assert wait_until(lambda: not pump.running, 5)
    assert not [t for t in threading.enumerate() if t.name == "s2s-uplink-test"]
    second = Recorder()
    pump.add(second)
    assert wait_until(lambda: second.pumps > 0, 5) and pump.running


def test_wake_pumps_before_the_tick():
    slow = UplinkPump(tick=60.0, name="s2s-uplink-slow")   # without wake(), one pump per minute
    session = Recorder()
    slow.add(session)
    try:
        assert wait_until(lambda: session.pumps == 1, 5)
        slow.wake()
        assert wait_until(lambda: session.pumps == 2, 5)
    finally:
        slow.remove(session)
    assert wait_until(lambda: not slow.running, 5)


@pytest.fixture
def tcp_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield client, server
    client.close()
    server.close()


def test_send_room_is_never_a_blocking_write(tcp_pair):
    """Write what send_room allows to a peer that never reads, on a socket that raises
    instead of blocking: every write goes through, and the room runs out."""
    client, _server = tcp_pair
    assert send_room(client) > 0 and unsent_bytes(client) == 0
    client.settimeout(0.0)            # a write that would block raises BlockingIOError
    frame = bytes(1300)               # about one 20 ms append at 24 kHz
    writes = 0
    while send_room(client) >= len(frame):
        assert client.send(frame) == len(frame)
        writes += 1
        assert writes < 100000, "the room never ran out"
    assert writes > 0 and unsent_bytes(client) > 0
    assert send_room(client) < len(frame)


def test_send_room_of_something_that_is_no_socket_says_go_ahead():
    assert send_room(object()) > 1 << 20


class _Ws:
    """What the sender uses of a websocket: its socket (and no lock)."""
    def __init__(self, sock):
        self.sock = sock
        self.lock = None


def test_caller_audio_that_waited_past_the_latency_bound_is_dropped_not_sent():
    import time
    from openai_s2s.call.uplink import UplinkSender
    from openai_s2s.control.config import Settings
    from openai_s2s.media.formats import PCMU
    options = dict(Settings().values, uplink_max_latency_ms=500)
    ours, theirs = socket.socketpair()
    try:
        sender = UplinkSender(8000, 160, options, lambda now: None, lambda exc: None)
        sender.connected(_Ws(ours))
        sender.start_audio(PCMU)
        for _ in range(50):                     # one second of caller audio, captured now
            sender.capture(bytes(320))
        sender.pump(time.monotonic() + 0.6)     # the pump gets to it 0.6 s late
        assert sender.dropped_late == 50 and sender.appends == 0 and sender.dropped_total == 50
        for _ in range(5):
            sender.capture(bytes(320))
        sender.pump(time.monotonic())           # on time: sent
        assert sender.appends == 5 and sender.dropped_late == 50
        assert max(sender.latency) < 0.5
    finally:
        ours.close()
        theirs.close()
