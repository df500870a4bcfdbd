"""A small server that misbehaves on purpose, for what a cooperative server never shows.

Each accepted connection reads the HTTP upgrade request and hands the socket to the test's
``behave(conn)``, which answers however it likes: an HTTP refusal, a redirect, garbage, a
stall, or a websocket handshake followed by hand-made frames. Loopback only.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Callable, Dict, List, Optional

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.request_line = ""
        self.headers: Dict[str, str] = {}
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
        head, _, self.rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.request_line = lines[0] if lines else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def http(self, status: int, reason: str, headers: Optional[Dict[str, str]] = None, body: bytes = b"") -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def accept_websocket(self) -> None:
        accept = base64.b64encode(hashlib.sha1(self.headers.get("sec-websocket-key", "").encode() + GUID).digest())
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    def frame(self, payload: bytes, opcode: int = 0x1, fin: bool = True, declared: Optional[int] = None) -> bytes:
        """A server frame (unmasked); ``declared`` overrides the length in the header."""
        n = len(payload) if declared is None else declared
        first = (0x80 if fin else 0) | opcode
        if n < 126:
            head = struct.pack("!BB", first, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", first, 126, n)
        else:
            head = struct.pack("!BBQ", first, 127, n)
        return head + payload

    def send_frame(self, payload: bytes, opcode: int = 0x1, **kw) -> None:
        self.sock.sendall(self.frame(payload, opcode, **kw))

    def answer_close(self, timeout: float = 10.0) -> None:
        """Read client frames (roughly: by their first byte) until a close, and answer it."""
        self.sock.settimeout(timeout)
        try:
            while True:
                head = self.sock.recv(2)
                if len(head) < 2:
                    return
                size = head[1] & 0x7F
                if size == 126:
                    size = struct.unpack("!H", self._exact(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", self._exact(8))[0]
                self._exact(4 + size)
                if head[0] & 0x0F == 0x8:
                    self.sock.sendall(b"\x88\x02\x03\xe8")
                    return
        except OSError:
            return

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data


class HostileServer:
    def __init__(self, behave: Callable[[Conn], None]):
        self.behave = behave
        self.conns: List[Conn] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True, name="hostile-accept").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True, name="hostile-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            conn = Conn(sock)
            self.conns.append(conn)
            self.behave(conn)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
