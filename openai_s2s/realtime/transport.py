"""The websocket itself: opening it (with a reason an operator can act on when it fails), the
receiver's reads, and the send buffer's room.

websocket-client does the handshake, the reading and the receiver's own replies (pong, close);
the uplink pump writes its frames itself (``frames.py``) under the same lock websocket-client
takes for its sends (``enable_multithread``), so frames never interleave. The receiver alone reads.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import socket
import ssl
import struct
import termios
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit

import websocket

from .. import native
from .endpoint import Endpoint, tls_context


class ConnectError(Exception):
    """The connection could not be made; ``str()`` is the reason for connect_failed."""


def open_websocket(endpoint: Endpoint, options: Dict[str, Any],
                   on_socket: Optional[Callable[[socket.socket], None]] = None) -> websocket.WebSocket:
    """Connect or raise :class:`ConnectError` with a reason an operator can act on.

    The TCP connection (and TLS) is made here rather than by websocket-client, so that
    ``on_socket`` gets the socket before anything can stall on it: a session deleted while it
    connects shuts that socket down instead of waiting for the connect timeout."""
    timeout = float(options.get("connect_timeout", 10.0))
    ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    try:
        sock = _open_socket(endpoint, options, timeout, on_socket)
        # No redirect is followed: websocket-client would send the key's header to wherever
        # the Location points, from wss:// down to ws:// too.
        ws.connect(endpoint.url, header=list(endpoint.headers), timeout=timeout, socket=sock,
                   suppress_origin=True, http_no_proxy=["*"], redirect_limit=0)
        _refuse_redirect(ws)
    except ConnectError:
        raise
    except websocket.WebSocketBadStatusException as exc:
        raise ConnectError(f"http {exc.status_code}") from None
    except socket.gaierror as exc:
        raise ConnectError(f"dns: {exc.strerror or exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectError(f"tls: {exc.verify_message or exc.reason}") from None
    except ssl.SSLError as exc:
        raise ConnectError(f"tls: {exc.reason or exc}") from None
    except (socket.timeout, websocket.WebSocketTimeoutException):
        raise ConnectError("timeout") from None
    except ConnectionRefusedError:
        raise ConnectError("refused") from None
    except OSError as exc:
        raise ConnectError(f"network: {exc.strerror or exc}") from None
    except websocket.WebSocketException as exc:
        _refuse_redirect(ws)   # websocket-client 1.7+ raises once the redirect limit is reached
        raise ConnectError(f"websocket: {exc}") from None
    ws.settimeout(float(options.get("send_timeout", 5.0)))
    limit_frames(ws, int(options.get("max_frame_bytes", 16 << 20)))
    ws.s2s_watch = read_ahead(ws)
    return ws


def _open_socket(endpoint: Endpoint, options: Dict[str, Any], timeout: float,
                 on_socket: Optional[Callable[[socket.socket], None]]) -> socket.socket:
    """TCP to the endpoint's host (each address in turn), then TLS for wss://."""
    parts = urlsplit(endpoint.url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    ctx = None
    if secure:
        try:
            ctx = tls_context(options)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConnectError(f"tls setup: {exc}") from None
    error: Optional[BaseException] = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            for level, name, value in _SOCKET_OPTIONS:
                sock.setsockopt(level, name, value)
            sock.settimeout(timeout)
            if on_socket is not None:
                on_socket(sock)
            sock.connect(address)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=host)
            return sock
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            if isinstance(exc, (ssl.SSLError, socket.timeout)):
                raise
            error = exc
    raise error or ConnectError(f"dns: no address for {host}")


# what websocket-client sets on its own sockets: no Nagle delay, and keepalives
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
for _name, _value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
    if hasattr(socket, _name):
        _SOCKET_OPTIONS.append((socket.IPPROTO_TCP, getattr(socket, _name), _value))


def limit_frames(ws: websocket.WebSocket, max_bytes: int) -> None:
    """Refuse, as a protocol error, a server frame or fragmented message over ``max_bytes``
    (websocket-client would read whatever length a frame declares into memory) and a masked
    server frame (RFC 6455 5.1). The checks run in websocket-client's frame reader, once per
    frame, on the receiver's thread."""
    frames = getattr(ws, "frame_buffer", None)
    recv_length = getattr(frames, "recv_length", None)
    if recv_length is not None:
        def checked_length() -> None:
            recv_length()
            header = frames.header
            if header is not None and header[5]:
                raise websocket.WebSocketProtocolException("the server masked a frame")
            if header is not None and header[4] & 0x8 and (frames.length or 0) > 125:
                raise websocket.WebSocketProtocolException(
                    f"a control frame of {frames.length} bytes (at most 125)")
            if frames.length is not None and frames.length > max_bytes:
                raise websocket.WebSocketProtocolException(
                    f"a frame of {frames.length} bytes is over max-frame-bytes ({max_bytes})")
        frames.recv_length = checked_length
    cont = getattr(ws, "cont_frame", None)
    add = getattr(cont, "add", None)
    if add is not None:
        def checked_add(frame: Any) -> None:
            add(frame)
            data = getattr(cont, "cont_data", None)
            if data and len(data[1]) > max_bytes:
                cont.cont_data = None
                raise websocket.WebSocketProtocolException(
                    f"a fragmented message of over {max_bytes} bytes (max-frame-bytes)")
        cont.add = checked_add


_REDIRECTS = (301, 302, 303, 307, 308)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


def _refuse_redirect(ws: websocket.WebSocket) -> None:
    """Raise ConnectError if the handshake's answer was a redirect (websocket-client before 1.7
    reports one as connected when told to follow none)."""
    response = getattr(ws, "handshake_response", None)
    status = getattr(response, "status", None)
    if status not in _REDIRECTS:
        return
    try:
        ws.shutdown()
    except Exception:
        pass
    location = (getattr(response, "headers", None) or {}).get("location") or ""
    try:
        host = urlsplit(location).hostname or ""
    except ValueError:
        host = ""
    if not host or not _HOST_CHARS.issuperset(host) or len(host) > 253:
        host = "an invalid location"
    raise ConnectError(f"http {status} redirect to {host} refused")


READ_AHEAD = 16384


# ioctl is asked on a media thread, recv reads what is already there: both keep the GIL (native.py)
_IOCTL, _RECV = native.libc_ioctl, native.libc_recv
try:
    from termios import FIONREAD
except ImportError:   # not a Unix: nothing can be asked, and the watch says so
    FIONREAD = None
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def inbound_bytes(sock: Any) -> int:
    """Bytes the kernel holds for ``sock`` that nobody has read yet; -1 if it cannot say."""
    if _IOCTL is None or FIONREAD is None:
        return -1
    count = ctypes.c_int(0)
    try:
        fd = sock.fileno()
    except (OSError, AttributeError):
        return -1
    if fd < 0 or _IOCTL(fd, FIONREAD, ctypes.byref(count)) != 0:
        return -1
    return count.value


class ReceiveWatch:
    """The receiver's reads, and whether the server owes us the next bytes (asked at an
    underrun, to tell whose it is).

    Each read first takes what the kernel already holds, without giving the GIL up (plain TCP);
    only when there is nothing does it wait for the socket, with the GIL released. The receiver
    is waiting on the server only during that wait, and only while the kernel still holds
    nothing for it. Once bytes have arrived, the time the receiver takes to get the GIL back,
    parse and decode them is the module's: an underrun then happened with the audio already on
    this machine. Busy with another event also counts as the module's, so the count is an upper
    bound on the module's underruns.

    It also keeps the receivers' turns (``take_turns``): a lock that a receiver holds while it
    parses and handles what it read, and gives up whenever it would wait. With one thread per
    call, a burst of server events (the service paces every call's audio on one clock) makes
    dozens of receivers runnable at once, and each queues for the GIL in front of the media
    loop and the pump; with turns at most one does, the rest wait on the lock."""

    def __init__(self, sock: Any, fallback: Callable[[int], bytes]):
        self.sock = sock
        self.waiting = False   # set and cleared by the receiver thread only
        self._fallback = fallback   # websocket-client's own read (TLS; no libc)
        self._poller: Any = None
        self._plain = _RECV is not None and _MSG_DONTWAIT and not isinstance(sock, ssl.SSLSocket)
        self._buf = ctypes.create_string_buffer(READ_AHEAD) if self._plain else None
        self._turn: Optional[Any] = None   # a lock every receiver shares (take_turns)
        self._held = False                 # this receiver holds it now

    # -- turns ---------------------------------------------------------------------
    def take_turns(self, turn: Any) -> None:
        """Share ``turn`` (a lock) with the other receivers: inside ``with watch:`` this receiver
        runs its Python only while it holds it, and gives it up whenever it waits (for the
        socket, a TLS read, or the send lock to answer a ping)."""
        self._turn = turn

    def __enter__(self) -> "ReceiveWatch":
        if self._turn is not None:
            self._turn.acquire()
            self._held = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._held:
            self._held = False
            self._turn.release()

    def without_turn(self, wait: Callable[..., Any]) -> Callable[..., Any]:
        """``wait`` run with this receiver's turn given up, and taken back after."""
        def run(*args: Any) -> Any:
            held = self._held
            if held:
                self.__exit__()
            try:
                return wait(*args)
            finally:
                if held:
                    self.__enter__()
        return run

    def waiting_on_server(self) -> bool:
        """True if nothing the server sent is on our side yet (or it cannot be told)."""
        if not self.waiting:
            return False
        return inbound_bytes(self.sock) <= 0

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (at least one), as websocket-client's read: raises
        WebSocketTimeoutException after the socket's timeout, WebSocketConnectionClosedException
        at the end of the stream, OSError on an error."""
        if self._plain:
            data = self._read_now(size)
            if data is not None:
                return data
        if self._held:
            return self.without_turn(self._wait_and_read)(size)
        return self._wait_and_read(size)

    def _wait_and_read(self, size: int) -> bytes:
        if not self.wait_readable(self.sock.gettimeout()):
            raise websocket.WebSocketTimeoutException("timed out")
        if self._plain:
            data = self._read_now(size)
            if data is not None:
                return data
        return self._fallback(size)   # TLS, or readable but nothing there: it waits with its timeout

    def _read_now(self, size: int) -> Optional[bytes]:
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "the socket is closed")
        while True:
            got = _RECV(fd, self._buf, min(size, READ_AHEAD), _MSG_DONTWAIT)
            if got > 0:
                return ctypes.string_at(self._buf, got)
            if got == 0:
                raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return None
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))

    def wait_readable(self, timeout: Optional[float]) -> bool:
        """Wait, with the GIL released, until the socket has something to read; False if the
        timeout passed first. A socket that cannot be watched (closed, no poll) is readable:
        the read that follows reports it."""
        if not self._plain:   # (a plain read has just found the kernel empty: no need to ask)
            pending = getattr(self.sock, "pending", None)   # TLS: records already decrypted
            if (pending is not None and pending()) or inbound_bytes(self.sock) != 0:
                return True   # bytes waiting, or a kernel that cannot be asked: read at once
        if self._poller is None:
            try:
                poller = select.poll()
                poller.register(self.sock, select.POLLIN | select.POLLPRI)
            except (AttributeError, ValueError, OSError):
                return True
            self._poller = poller
        self.waiting = True
        try:
            # a closed descriptor answers POLLNVAL at once; the read then raises
            return bool(self._poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
        finally:
            self.waiting = False


def read_ahead(ws: websocket.WebSocket) -> Optional[ReceiveWatch]:
    """Let websocket-client read ahead of the frame it is parsing, through a ReceiveWatch.

    Its frame buffer asks the socket for exactly the bytes it needs next (2 for the header,
    then the length, then the payload): three recv calls per frame, and each gives up the GIL
    and queues to take it back behind the media threads. Asked for more, it keeps the rest for
    the next frame (websocket-client's recv_strict); where that hook is missing, nothing changes."""
    frames = getattr(ws, "frame_buffer", None)
    recv = getattr(frames, "recv", None)
    sock = getattr(ws, "sock", None)
    if recv is None or sock is None:
        return None
    watch = ReceiveWatch(sock, recv)
    frames.recv = lambda size: watch.read(max(size, READ_AHEAD))
    # websocket-client answers a ping from inside the read, under the send lock, which the
    # uplink may hold while it waits for room: the answer waits without the receiver's turn.
    pong = getattr(ws, "pong", None)
    if pong is not None:
        ws.pong = watch.without_turn(pong)
    return watch


def close_code(frame_data: bytes) -> Optional[int]:
    return int.from_bytes(frame_data[:2], "big") if len(frame_data) >= 2 else None



def unsent_bytes(sock: Any) -> int:
    """Bytes queued on a TCP socket and not yet acknowledged (Linux SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return struct.unpack("i", raw)[0]


def send_room(sock: Any) -> int:
    """Bytes that can be written to ``sock`` now without the write blocking.

    The kernel blocks a writer once the queued buffers' true size reaches SO_SNDBUF; the
    true size of a buffer is more than its payload, so only half of SO_SNDBUF is counted
    as room. Where the socket cannot be asked (not Linux, a test double), say there is room."""
    try:
        budget = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        return budget - unsent_bytes(sock)
    except (OSError, AttributeError, ValueError):
        return 1 << 30
