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

    def pump(self, now: float, wait: bool = True) -> None:
        self.pumps += 1
        if self.fail:
            raise RuntimeError("boom")

    def pump_failed(self, exc: BaseException) -> None:
        self.failures.append(exc)

    def waiting_since(self) -> float:
        return float("inf")


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
    options = dict(Settings().values, uplink_max_latency_ms=500, chunk_ms=20)   # an append a frame
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


def _appends_and_events(sock):
    """Every websocket frame the peer has been sent so far, parsed by websocket-client's reader."""
    import base64
    import json
    from websocket._abnf import frame_buffer
    sock.settimeout(0.5)
    data = b""
    while True:
        try:
            part = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not part:
            break
        data += part
    pos = [0]

    def recv(n):
        piece = data[pos[0]:pos[0] + n]
        pos[0] += len(piece)
        return piece

    reader, out = frame_buffer(recv, skip_utf8_validation=True), []
    while pos[0] < len(data):
        event = json.loads(reader.recv_frame().data)
        out.append(base64.b64decode(event["audio"]) if event["type"] == "input_audio_buffer.append" else event)
    return out


@pytest.mark.parametrize("fmt_name,chunk_ms,resampler", [
    ("pcm", 20, "fir"), ("pcm", 60, "fir"), ("pcm", 30, "fir"), ("pcmu", 60, "fir"), ("pcma", 100, "fir"),
    ("pcm", 60, "sinc_fastest")])
def test_a_chunk_carries_the_frames_encoded_one_by_one(fmt_name, chunk_ms, resampler):
    """Whether the uplink encodes each frame as it comes or a chunk's frames at once, the
    server gets the audio of the frames encoded one after the other (to the LSB for the FIR), in appends of chunk_ms
    (rounded up to whole frames). A client event ends the chunk, as a new format does: the
    audio captured before it goes before it (a commit carries all of it)."""
    import time
    import numpy as np
    from openai_s2s.call.uplink import UplinkSender
    from openai_s2s.control.config import Settings
    from openai_s2s.media.codec import UplinkEncoder
    from openai_s2s.media.formats import BY_NAME
    fmt = BY_NAME[fmt_name]
    options = dict(Settings().values, chunk_ms=chunk_ms, resampler=resampler)
    t = np.arange(8000) / 8000
    pcm = (6000 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype("<i2").tobytes()
    frames = [pcm[i:i + 320] for i in range(0, len(pcm), 320)][:23]     # 460 ms
    reference = UplinkEncoder(8000, fmt, resampler)
    expected = b"".join(reference.encode(f) for f in frames)
    ours, theirs = socket.socketpair()
    try:
        sender = UplinkSender(8000, 160, options, lambda now: None, lambda exc: None)
        sender.connected(_Ws(ours))
        sender.start_audio(fmt)
        for i, frame in enumerate(frames):
            sender.capture(frame)
            if i % 2:
                sender.pump(time.monotonic())
        sender.event(b'{"type":"input_audio_buffer.commit"}')
        sender.pump(time.monotonic())
        sender.start_audio(fmt)
        sender.pump(time.monotonic())
        got = _appends_and_events(theirs)
    finally:
        ours.close()
        theirs.close()
    commit = got.index({"type": "input_audio_buffer.commit"})
    appends = got[:commit] + got[commit + 1:]
    sent = b"".join(appends)
    if fmt_name == "pcm" and resampler == "fir":
        # The FIR is one matrix product a call, and OpenBLAS may sum a product of 15 rows in
        # another order than one of 5 (seen on an AMD EPYC: 2 samples of 3,680, by one LSB).
        assert len(sent) == len(expected)
        diff = np.abs(np.frombuffer(sent, "<i2").astype(int) - np.frombuffer(expected, "<i2").astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= len(diff) // 500
    else:
        assert sent == expected
    assert commit == len(got) - 1       # after all the audio captured before it
    per_sample = 2 if fmt_name == "pcm" else 1
    frame_bytes = len(reference.encode(bytes(320))) if resampler == "fir" else None
    if frame_bytes:
        frames_per_chunk = -(-chunk_ms * fmt.rate // 1000 * per_sample // frame_bytes)
        assert [len(a) for a in appends[:-1]] == [frames_per_chunk * frame_bytes] * (len(appends) - 1)
        assert 0 < len(appends[-1]) <= frames_per_chunk * frame_bytes   # the chunk the commit ended
    assert sender.appends == len(appends) and sender.bytes_up == len(expected)


def _open_sender(ours, **changes):
    from openai_s2s.call.uplink import UplinkSender
    from openai_s2s.control.config import Settings
    from openai_s2s.media.formats import PCMU
    options = dict(Settings().values, **changes)
    ticks, failures = [], []
    sender = UplinkSender(8000, 160, options, ticks.append, failures.append)
    sender.connected(_Ws(ours))
    sender.start_audio(PCMU)
    return sender, ticks, failures


def test_every_event_goes_after_the_audio_before_it_in_one_pump():
    """Two client events, each after part of a chunk: one pump sends all of it in the order it
    was queued, each event behind the short append that carries the audio before it."""
    import time
    ours, theirs = socket.socketpair()
    try:
        sender, _, _ = _open_sender(ours, chunk_ms=40)     # two G.711 frames an append
        sender.capture(bytes(320))
        sender.event(b'{"type":"input_audio_buffer.commit"}')
        sender.capture(bytes(320))
        sender.event(b'{"type":"response.create"}')
        sender.pump(time.monotonic())
        got = _appends_and_events(theirs)
    finally:
        ours.close()
        theirs.close()
    assert [g if isinstance(g, dict) else len(g) for g in got] == [
        160, {"type": "input_audio_buffer.commit"}, 160, {"type": "response.create"}]
    assert sender.events_queued == 0 and sender.appends == 2


def test_the_media_loop_s_pump_never_waits_to_finish_a_half_written_frame():
    """The unicast loop pumps its calls' uplinks: a frame the kernel took only part of must
    not hold it (every call's media) for the send timeout."""
    import time
    ours, theirs = socket.socketpair()
    try:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sender, _, failures = _open_sender(ours, send_timeout=600)
        sender._writer.may_wait = False
        while sender._writer.unfinished is None:      # the peer reads nothing
            sender._writer.send(bytes(3000))
        sender.capture(bytes(320))
        done = threading.Event()
        threading.Thread(target=lambda: (sender.pump(time.monotonic(), wait=False), done.set()),
                         daemon=True).start()
        assert done.wait(5), "the pump waited for the socket"
        assert sender._writer.unfinished is not None and failures == []
    finally:
        ours.close()
        theirs.close()


def test_waiting_since_is_the_capture_time_of_the_oldest_audio_not_yet_sent():
    from openai_s2s.call.uplink import UplinkSender
    from openai_s2s.control.config import Settings
    from openai_s2s.media.formats import BY_NAME
    options = dict(Settings().values, chunk_ms=60)   # three frames an append
    ours, theirs = socket.socketpair()
    try:
        sender = UplinkSender(8000, 160, options, lambda now: None, lambda exc: None)
        assert sender.waiting_since() == float("inf")
        sender.connected(_Ws(ours))
        sender.start_audio(BY_NAME["pcm"])
        sender.pump(100.0)                       # takes the format: nothing waits now
        assert sender.waiting_since() == float("inf")
        sender.opened_at = 0.0
        sender.capture(bytes(320), 10.0)
        sender.capture(bytes(320), 10.02)
        assert sender.waiting_since() == 10.0    # in the queue
        sender.pump(10.03)                       # two of three frames: held for the chunk
        assert sender.appends == 0 and sender.waiting_since() == 10.0
        sender.capture(bytes(320), 10.04)
        sender.pump(10.05)                       # the chunk is whole and sent
        assert sender.appends == 1 and sender.waiting_since() == float("inf")
        sender.event(b'{"type":"response.create"}')
        assert sender.waiting_since() == 0.0     # a client event goes at once
    finally:
        ours.close()
        theirs.close()
