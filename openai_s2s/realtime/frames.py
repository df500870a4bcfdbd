"""Websocket client frames for the uplink pump: built here, written without giving up the GIL.

websocket-client's ``send`` gives the GIL up twice per frame: ``os.urandom`` for the mask key
and the socket's ``send``. In the switch every media thread queues for the GIL, so a thread
that gives it up waits behind them to get it back; the pump does that for every call on every
tick, and at 100 calls it fell seconds behind while using half a core (measured: uplink p50
3.2 s). Here the mask keys come from a pool filled by one ``os.urandom`` call per 1024 frames,
and on a plain TCP socket the frame is written by libc ``send`` bound through ``ctypes.PyDLL``,
which keeps the GIL, with MSG_DONTWAIT: the pump only writes what ``transport.send_room`` said
fits, so the call returns at once. A TLS socket goes through Python's ssl module (which gives
the GIL up around SSL_write) as before.

The caller holds ``ws.lock``, the lock websocket-client's own senders (pong, close) take, so
frames never interleave.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import ssl
import struct
import time
from typing import Any, Optional

import numpy as np

from .. import native

_xor, _frombuffer, _u8 = np.bitwise_xor, np.frombuffer, np.uint8

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_PING = 0x9
MAX_OVERHEAD = 14   # the longest client frame header: 2 + 8 length + 4 mask key
MSG_DONTWAIT = 0x40
MSG_NOSIGNAL = 0x4000
_KEYS = 1024


_libc_send = native.libc_send


class MaskKeys:
    """Mask keys (RFC 6455 5.3: from a strong source of entropy), 4 bytes at a time from a pool."""

    def __init__(self, pool_keys: int = _KEYS):
        self._size = 4 * pool_keys
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(self._size), 0
        key = self._pool[self._at:self._at + 4]
        self._at += 4
        return key


_NUMPY_MASK = 256     # from this many bytes numpy's XOR is the cheaper (measured: 1.2 against 2.7 us at 1.3 KB)


def mask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    stream = key * (n // 4 + 1)
    if n >= _NUMPY_MASK:
        return _xor(_frombuffer(data, _u8), _frombuffer(stream, _u8, n)).tobytes()
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")).to_bytes(n, "little")


def client_frame(payload: bytes, key: bytes, opcode: int = OPCODE_TEXT, fin: bool = True) -> bytes:
    """One masked client frame; ``fin=False`` for a fragment a continuation frame will follow."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + key + mask(key, payload)


class FrameWriter:
    """Writes whole client frames on one connected socket; the caller holds the socket's send lock.

    ``may_wait`` False (the unicast media loop's sends) never waits: where the kernel takes only part
    of a frame, the rest is kept (``unfinished``, with any frame after it) for the next send
    that may wait, or ``finish()``, to write first."""

    def __init__(self, sock: Any, keys: Optional[MaskKeys] = None, timeout: float = 5.0):
        self.sock = sock
        self.keys = keys or MaskKeys()
        self.timeout = timeout
        # ssl.SSLSocket is a socket.socket too: its bytes must go through the ssl module.
        self.raw = (_libc_send is not None and isinstance(sock, socket.socket)
                    and not isinstance(sock, ssl.SSLSocket))
        self.may_wait = True
        self.unfinished: Optional[bytes] = None

    def send(self, payload: bytes, opcode: int = OPCODE_TEXT, fin: bool = True) -> int:
        """Write one frame whole; returns its size on the wire. Raises OSError if the socket fails."""
        data = client_frame(payload, self.keys.take(), opcode, fin)
        if self.unfinished is not None:
            if not self.may_wait and not self.flush_some():
                self.unfinished += data
                return len(data)
            self.finish()
        if not self.raw:
            if not self.may_wait:
                raise OSError(errno.EWOULDBLOCK, "only a raw socket is written without waiting")
            self._finish(memoryview(data))
            return len(data)
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "socket is closed")
        sent = _libc_send(fd, data, len(data), MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent == len(data):
            return sent
        if sent < 0:
            err = ctypes.get_errno() or errno.EIO
            if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                raise OSError(err, os.strerror(err))
            sent = 0
        if not self.may_wait:
            self.unfinished = bytes(memoryview(data)[sent:])
            return len(data)
        # The room estimate was wrong: finish the frame, waiting for room up to the timeout,
        # since nothing else may be written until this frame is whole.
        self._finish(memoryview(data)[sent:])
        return len(data)

    def flush_some(self) -> bool:
        """Write what the kernel takes now of what a send that could not wait left, without
        waiting; True once nothing is left. Only on a raw socket (``raw``)."""
        rest = self.unfinished
        if rest is None:
            return True
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "socket is closed")
        sent = _libc_send(fd, rest, len(rest), MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent < 0:
            err = ctypes.get_errno() or errno.EIO
            if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                raise OSError(err, os.strerror(err))
            return False
        self.unfinished = rest[sent:] if sent < len(rest) else None
        return self.unfinished is None

    def finish(self) -> None:
        """Write what a send that could not wait left (nothing if none), waiting up to the timeout."""
        rest, self.unfinished = self.unfinished, None
        if rest is not None:
            self._finish(memoryview(rest))

    def _finish(self, data: memoryview) -> None:
        """Write all of ``data`` on a blocking or non-blocking socket, plain or TLS."""
        deadline = time.monotonic() + self.timeout
        while data:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent = 0
            data = data[sent:]
            if data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OSError(errno.ETIMEDOUT, "send timed out with the frame half written")
                select.select([], [self.sock], [], left)
