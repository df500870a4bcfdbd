"""Whose underrun is it: the receive watch (connection.ReceiveWatch) on real sockets, and the
playout counter it feeds, end to end against the local server."""
import socket
import threading
import time

import pytest
import websocket

from openai_s2s.call import registry
from openai_s2s.realtime.endpoint import build_endpoint
from openai_s2s.realtime.transport import ReceiveWatch, inbound_bytes, open_websocket
from openai_s2s.localserver import LocalRealtimeServer
from openai_s2s.media.playout import PlayoutBuffer
from engine_harness import GA_PATH, KEY, SEED_SESSION_UPDATE, Harness, wait_until


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_inbound_bytes_counts_what_nobody_has_read(pair):
    ours, theirs = pair
    assert inbound_bytes(ours) == 0
    theirs.sendall(b"x" * 300)
    assert wait_until(lambda: inbound_bytes(ours) == 300, 2)
    ours.recv(100)
    assert inbound_bytes(ours) == 200
    ours.close()
    assert inbound_bytes(ours) == -1   # closed: it cannot say


def test_the_watch_says_server_only_while_the_receiver_waits_on_an_empty_socket(pair):
    ours, theirs = pair
    watch = ReceiveWatch(ours, ours.recv)
    assert not watch.waiting_on_server()          # not waiting: whatever is late is ours
    result = []
    reader = threading.Thread(target=lambda: result.append(watch.wait_readable(5.0)))
    reader.start()
    assert wait_until(lambda: watch.waiting, 2)
    assert watch.waiting_on_server()
    theirs.sendall(b"abc")
    reader.join(5)
    assert result == [True] and not watch.waiting
    assert not watch.waiting_on_server()
    # bytes already in the kernel: no wait at all
    assert watch.wait_readable(5.0) and not watch.waiting


def test_bytes_in_the_kernel_are_ours_even_before_the_receiver_wakes(pair):
    """The receiver's wake-up (taking the GIL back) is the module's time: once the kernel holds
    the server's bytes, an underrun is no longer the server's."""
    ours, theirs = pair
    watch = ReceiveWatch(ours, ours.recv)
    watch.waiting = True    # as it is between the poll returning and the receiver running
    assert watch.waiting_on_server()
    theirs.sendall(b"abc")
    assert wait_until(lambda: not watch.waiting_on_server(), 2)


def test_wait_readable_times_out_and_a_closed_socket_is_left_to_the_read(pair):
    ours, _ = pair
    watch = ReceiveWatch(ours, ours.recv)
    assert watch.wait_readable(0.05) is False
    ours.close()
    assert watch.wait_readable(5.0) is True   # at once: the read that follows raises


def test_read_takes_what_is_there_waits_for_more_and_reports_the_end(pair):
    ours, theirs = pair
    ours.settimeout(5.0)
    watch = ReceiveWatch(ours, ours.recv)
    theirs.sendall(b"hello")
    assert wait_until(lambda: inbound_bytes(ours) == 5, 2)
    assert watch.read(16384) == b"hello"
    later = threading.Timer(0.1, lambda: theirs.sendall(b"world"))
    later.start()
    assert watch.read(3) == b"wor"      # waited for it; at most what was asked
    assert watch.read(16384) == b"ld"
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        watch.read(16384)


def test_read_times_out_like_websocket_client_and_a_closed_socket_is_an_oserror(pair):
    ours, _ = pair
    ours.settimeout(0.05)
    watch = ReceiveWatch(ours, ours.recv)
    with pytest.raises(websocket.WebSocketTimeoutException):
        watch.read(16384)
    ours.close()
    with pytest.raises(OSError):
        watch.read(16384)


def test_underrun_is_counted_as_the_receivers_only_when_the_server_is_not_owed():
    buf = PlayoutBuffer(8000, 160, 1000)
    buf.push(("i", 0), bytes(320), 1.0)
    assert buf.next_frame() is not None
    owed = [True]
    buf.waiting_on_server = lambda: owed[0]
    assert buf.next_frame() is None and buf.underruns == 1 and buf.underruns_receiver_behind == 0
    owed[0] = False
    assert buf.next_frame() is None and buf.underruns == 2 and buf.underruns_receiver_behind == 1
    buf.end_item()
    assert buf.next_frame() is None and buf.underruns == 2   # done streaming: no underrun at all


def test_the_modules_websocket_times_out_on_a_silent_server():
    with LocalRealtimeServer(api_key=KEY) as server:
        ws = open_websocket(build_endpoint(server.url, GA_PATH, "bearer", KEY), {"send_timeout": 0.3})
        try:
            assert ws.s2s_watch is not None
            assert b"session.created" in ws.recv().encode()
            with pytest.raises(websocket.WebSocketTimeoutException):
                ws.recv()
        finally:
            ws.close()


def _streaming_session(server: LocalRealtimeServer, uuid: str):
    h = Harness(server)
    h.call(uuid)
    h.create(uuid)
    h.connected(uuid)
    h.send(uuid, SEED_SESSION_UPDATE)
    h.send(uuid, {"type": "response.create"})
    return h, registry.get(uuid)


def test_a_server_slower_than_real_time_underruns_and_none_is_the_modules():
    with LocalRealtimeServer(api_key=KEY, speed=0.5, reply="tone") as server:
        h, session = _streaming_session(server, "u-slow")
        try:
            assert wait_until(lambda: session.playout.underruns >= 5)
            assert session.playout.underruns_receiver_behind == 0
        finally:
            h.finish()


def test_a_receiver_held_up_while_the_server_streams_makes_underruns_that_are_the_modules():
    """The session's lock stands in for a receiver starved of the GIL: it holds the receiver
    between two server events while the server goes on sending in real time."""
    with LocalRealtimeServer(api_key=KEY, speed=1.0, reply="tone") as server:
        h, session = _streaming_session(server, "u-held")
        try:
            assert wait_until(lambda: session.playout.frames_out >= 2)
            with session.lock:
                assert wait_until(lambda: session.playout.underruns_receiver_behind >= 3, 3)
            status = session.status()["counters"]
            assert status["underruns_receiver_behind"] >= 3
            assert status["underruns"] >= status["underruns_receiver_behind"]
        finally:
            h.finish()


# -- the receivers' turns -------------------------------------------------------------------

def test_a_receiver_gives_its_turn_up_while_it_waits_for_its_socket_and_takes_it_back(pair):
    ours, theirs = pair
    ours.settimeout(5.0)
    turn = threading.Lock()
    watch = ReceiveWatch(ours, ours.recv)
    watch.take_turns(turn)
    got, handled, done = [], threading.Event(), threading.Event()

    def receive():
        with watch:
            got.append(watch.read(16384))
            handled.set()          # "handling" what it read, with the turn
            done.wait(5)

    reader = threading.Thread(target=receive)
    reader.start()
    assert wait_until(lambda: watch.waiting, 2)
    assert turn.acquire(timeout=2)      # another receiver runs while this one waits
    turn.release()
    theirs.sendall(b"event")
    assert handled.wait(5) and got == [b"event"]
    assert not turn.acquire(blocking=False)   # held while it handles the event
    done.set()
    reader.join(5)
    assert turn.acquire(blocking=False)   # and given back when it is done
    turn.release()


def test_a_receiver_waiting_for_the_send_lock_to_answer_a_ping_does_not_hold_the_turn():
    """The uplink can hold the send lock while it waits for room (a server that does not read):
    the answer to that server's ping must not stop every other call's receiver."""
    with LocalRealtimeServer(api_key=KEY) as server:
        ws = open_websocket(build_endpoint(server.url, GA_PATH, "bearer", KEY), {"send_timeout": 2})
        try:
            turn = threading.Lock()
            ws.s2s_watch.take_turns(turn)
            answered = threading.Event()

            def answer_ping():
                with ws.s2s_watch:
                    ws.pong(b"ping")    # as websocket-client does from inside the read
                    answered.set()

            with ws.lock:               # the uplink's send under way
                responder = threading.Thread(target=answer_ping)
                responder.start()
                assert turn.acquire(timeout=2)   # not held while the pong waits for the lock
                turn.release()
                assert not answered.is_set()
            assert answered.wait(5)
            responder.join(5)
        finally:
            ws.close()


def test_no_two_receivers_handle_server_events_at_once():
    """Each receiver handles its events with the shared turn: a handler that gives the GIL up
    (here it sleeps) is still the only one running. Without turns the three calls' handlers
    overlap at once."""
    with LocalRealtimeServer(api_key=KEY, speed=1.0, reply="tone") as server:
        sessions, harnesses = [], []
        running, overlaps, handled = [0], [0], [0]
        guard = threading.Lock()
        try:
            for n in range(3):
                h, session = _streaming_session(server, f"u-turn-{n}")
                harnesses.append(h)
                sessions.append(session)
                real = session.proto.server_event

                def counted(data, real=real):
                    with guard:
                        running[0] += 1
                        overlaps[0] = max(overlaps[0], running[0])
                    try:
                        time.sleep(0.002)
                        return real(data)
                    finally:
                        with guard:
                            running[0] -= 1
                            handled[0] += 1
                session.proto.server_event = counted
            assert wait_until(lambda: handled[0] >= 60, 10)
            assert overlaps[0] == 1
        finally:
            for h in harnesses:
                h.finish()
