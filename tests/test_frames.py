"""The uplink's own websocket client frames (openai_s2s.frames), checked against RFC 6455 and
against websocket-client's parser on real sockets."""
import socket
import threading

import pytest
from websocket._abnf import ABNF, frame_buffer

from openai_s2s.realtime import frames


def _parse(data: bytes):
    """Parse one frame with websocket-client's own reader (an implementation that is not ours)."""
    pos = [0]

    def recv(n):
        chunk = data[pos[0]:pos[0] + n]
        if not chunk:
            raise AssertionError("the frame is cut short")
        pos[0] += len(chunk)
        return chunk

    frame = frame_buffer(recv, skip_utf8_validation=True).recv_frame()
    return frame, data[pos[0]:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1000, 65535, 65536, 200000])
def test_a_frame_is_final_masked_and_unmasks_to_the_payload(size):
    payload = bytes((i * 7) & 0xFF for i in range(size))
    key = b"\x12\x34\x56\x78"
    data = frames.client_frame(payload, key)
    assert data[0] == 0x81                      # FIN + text
    assert data[1] & 0x80                       # masked, as a client must
    frame, rest = _parse(data)
    assert rest == b""
    assert frame.opcode == ABNF.OPCODE_TEXT and frame.fin == 1
    assert frame.data == payload
    if size:
        assert payload not in data              # the payload is not on the wire in clear


def test_a_ping_frame_is_a_control_frame():
    frame, _ = _parse(frames.client_frame(b"", b"abcd", frames.OPCODE_PING))
    assert frame.opcode == ABNF.OPCODE_PING and frame.data == b""


def test_mask_matches_websocket_client():
    data = bytes(range(256)) * 5 + b"xyz"
    assert frames.mask(b"\x01\xfe\x33\xc4", data) == ABNF.mask(b"\x01\xfe\x33\xc4", data)


def test_mask_keys_come_from_a_pool_that_refills():
    keys = frames.MaskKeys(pool_keys=8)
    taken = [keys.take() for _ in range(40)]
    assert all(len(k) == 4 for k in taken)
    assert len(set(taken)) > 30                 # random, not a fixed key, across refills


def test_writer_writes_whole_frames_on_a_plain_socket():
    a, b = socket.socketpair()
    try:
        writer = frames.FrameWriter(a)
        assert writer.raw == (frames._libc_send is not None)
        sizes = [writer.send(b"hello %d" % i) for i in range(50)]
        got = b""
        while len(got) < sum(sizes):
            got += b.recv(65536)
        for i in range(50):
            frame, got = _parse(got)
            assert frame.data == b"hello %d" % i
        assert got == b""
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("blocking", [True, False])
def test_a_write_the_socket_cannot_take_at_once_is_finished_whole(blocking):
    """When the room estimate is wrong, the frame is completed by waiting for room, never cut,
    whether the socket has a timeout (as the module's do) or is non-blocking."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.settimeout(5 if blocking else 0)
    payload = bytes(range(256)) * 2000           # 512 KB: far more than the buffers hold
    wire_size = len(payload) + 2 + 8 + 4         # header, 64-bit length, mask key
    received = bytearray()

    def read_all():
        while len(received) < wire_size:
            chunk = b.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    try:
        writer = frames.FrameWriter(a)
        reader.start()
        size = writer.send(payload)
        reader.join(10)
        frame, rest = _parse(bytes(received))
        assert size == len(received) and frame.data == payload and rest == b""
    finally:
        a.close()
        b.close()


def test_a_closed_socket_raises_oserror():
    a, b = socket.socketpair()
    writer = frames.FrameWriter(a)
    a.close()
    b.close()
    with pytest.raises(OSError):
        writer.send(b"late")


def test_a_peer_that_went_away_raises_oserror_not_sigpipe():
    a, b = socket.socketpair()
    writer = frames.FrameWriter(a)
    b.close()
    with pytest.raises(OSError):
        for _ in range(10):
            writer.send(b"x" * 1000)
    a.close()



def test_a_peer_that_never_reads_times_out_instead_of_blocking_forever():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a.setblocking(False)
    try:
        writer = frames.FrameWriter(a, timeout=0.3)
        with pytest.raises(OSError):
            for _ in range(100):
                writer.send(bytes(65536))
    finally:
        a.close()
        b.close()


def test_a_fragment_has_fin_clear_and_its_continuation_sets_it():
    key = b"\x01\x02\x03\x04"
    first = frames.client_frame(b"hello ", key, frames.OPCODE_TEXT, fin=False)
    last = frames.client_frame(b"world", key, frames.OPCODE_CONTINUATION)
    assert first[0] == 0x01 and last[0] == 0x80
    assert frames.mask(key, first[6:]) == b"hello " and frames.mask(key, last[6:]) == b"world"


@pytest.mark.parametrize("size", [1, 3, 255, 256, 257, 1339, 20001])
def test_mask_matches_websocket_client_either_side_of_the_numpy_threshold(size):
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    key = b"\x9a\x00\x7f\xe1"
    assert frames.mask(key, data) == ABNF.mask(key, data)
    assert frames.mask(key, memoryview(data)) == ABNF.mask(key, data)   # a fragment is a view


def _read_all(sock, want):
    sock.settimeout(2)
    data = b""
    while len(data) < want:
        part = sock.recv(1 << 20)
        assert part, "the peer closed"
        data += part
    return data


def test_a_writer_that_may_not_wait_keeps_what_the_kernel_refused_and_writes_it_first_later():
    """A media thread never waits for the socket: a frame the kernel takes only part of is
    kept, with the frames after it, and the next send that may wait writes them first, whole
    and in order."""
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer = frames.FrameWriter(a, timeout=2.0)
        writer.may_wait = False
        payloads = [bytes([i]) * 3000 for i in range(40)]   # far more than the peer's buffers hold
        for p in payloads[:30]:
            assert writer.send(p) > len(p)                  # returns at once, never waits
        assert writer.unfinished is not None                 # the kernel refused some of it
        writer.may_wait = True
        got = []
        reader = threading.Thread(target=lambda: got.append(_read_all(b, sum(
            len(frames.client_frame(p, b"0000")) for p in payloads))))
        reader.start()
        for p in payloads[30:]:
            writer.send(p)                                   # writes the kept bytes first
        writer.finish()
        reader.join(5)
        data = got[0]
        for p in payloads:
            frame, data = _parse(data)
            assert frame.data == p and frame.fin == 1
        assert data == b"" and writer.unfinished is None
    finally:
        a.close()
        b.close()


def test_a_writer_that_may_not_wait_refuses_a_tls_socket():
    import ssl
    ctx = ssl.create_default_context()
    raw = socket.socket()
    try:
        tls = ctx.wrap_socket(raw, do_handshake_on_connect=False, server_hostname="x")
        writer = frames.FrameWriter(tls)
        assert not writer.raw
        writer.may_wait = False
        with pytest.raises(OSError):
            writer.send(b"x")
    finally:
        raw.close()


def test_a_writer_that_may_not_wait_writes_what_it_kept_once_the_kernel_has_room_without_waiting():
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer = frames.FrameWriter(a, timeout=2.0)
        writer.may_wait = False
        payloads = [bytes([i]) * 3000 for i in range(20)]
        for p in payloads:
            writer.send(p)
        assert writer.unfinished is not None
        assert writer.flush_some() is False          # the peer has read nothing: no room, no wait
        want = sum(len(frames.client_frame(p, b"0000")) for p in payloads)
        b.settimeout(2)
        data = b""
        while writer.unfinished is not None or len(data) < want:
            try:
                b.setblocking(False)
                data += b.recv(1 << 20)
            except BlockingIOError:
                pass
            writer.flush_some()
        for p in payloads:
            frame, data = _parse(data)
            assert frame.data == p
        assert data == b""
    finally:
        a.close()
        b.close()
