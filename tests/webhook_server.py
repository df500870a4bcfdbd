"""A small HTTP server on 127.0.0.1 for webhook tests: it keeps each request's raw bytes and
answers as told (status, body, extra headers, a delay before answering)."""
from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Dict, List, Optional


class WebhookServer:
    def __init__(self, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.ssl_context = ssl_context
        self.status = 200
        self.body = b'{"status": "shipped"}'
        self.headers: Dict[str, str] = {"Content-Type": "application/json"}
        self.delay = 0.0
        self.trickle = 0.0                   # seconds between the body's bytes (0: all at once)
        self.requests: List[bytes] = []      # raw: request line, headers and body
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}/hook"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="webhook-server")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            raw = b""
            try:
                if self.ssl_context is not None:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True)
                while b"\r\n\r\n" not in raw:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    raw += chunk
                head, _, body = raw.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.requests.append(head + b"\r\n\r\n" + body)
                if self.delay:
                    time.sleep(self.delay)
                headers = dict(self.headers, **{"Content-Length": str(len(self.body)), "Connection": "close"})
                conn.sendall(f"HTTP/1.1 {self.status} X\r\n".encode()
                             + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
                             + b"\r\n" + (b"" if self.trickle else self.body))
                for i in range(len(self.body)) if self.trickle else ():
                    time.sleep(self.trickle)
                    conn.sendall(self.body[i:i + 1])
            except (OSError, ssl.SSLError):
                pass

    def request(self, index: int = -1) -> Optional[bytes]:
        return self.requests[index] if self.requests else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
