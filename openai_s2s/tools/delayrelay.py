"""A TCP relay that holds every chunk back for a random delay, in order, both ways.

The kernel here has no netem, so tests/netpath.py puts this relay on the path to give it
latency: each chunk read from one side is written to the other side ``--min``..``--max``
seconds later (never before an earlier chunk: order is kept). At most ``--queue`` bytes wait
per direction; past that the relay stops reading, so the sender sees its socket fill as it
would on a slow path. The process ends by itself after ``--lifetime`` seconds and takes at
most ``--max-conns`` connections.

    python3 tests/delayrelay.py --listen 10.203.7.2:8766 --to 10.203.7.2:8765
"""
from __future__ import annotations

import argparse
import collections
import random
import socket
import sys
import threading
import time
from typing import Deque, Optional, Tuple

CHUNK = 65536


class Direction:
    """One way of one connection: a reader thread queues chunks with a due time, a writer
    thread sends each when it is due."""

    def __init__(self, src: socket.socket, dst: socket.socket, low: float, high: float, limit: int,
                 on_error):
        self.src, self.dst, self.low, self.high, self.limit = src, dst, low, high, limit
        self.on_error = on_error
        self.queue: Deque[Tuple[float, Optional[bytes]]] = collections.deque()
        self.queued = 0
        self.last_due = 0.0
        self.cond = threading.Condition()
        self.closed = False

    def start(self) -> None:
        for target in (self._read, self._write):
            threading.Thread(target=target, daemon=True).start()

    def stop(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _read(self) -> None:
        while True:
            with self.cond:
                while self.queued >= self.limit and not self.closed:
                    self.cond.wait(0.5)
                if self.closed:
                    return
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            with self.cond:
                due = max(time.monotonic() + random.uniform(self.low, self.high), self.last_due)
                self.last_due = due
                self.queue.append((due, data or None))
                self.queued += len(data)
                self.cond.notify_all()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait(0.5)
                if self.closed:
                    return
                due, data = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cond:
                self.queue.popleft()
                self.queued -= len(data or b"")
                self.cond.notify_all()
            try:
                if data is None:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
            except OSError:
                self.on_error()
                return


def relay(client: socket.socket, target: Tuple[str, int], low: float, high: float, limit: int) -> None:
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ways = []

    def broken() -> None:
        for way in ways:
            way.stop()
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    ways.extend([Direction(client, upstream, low, high, limit, broken),
                 Direction(upstream, client, low, high, limit, broken)])
    for way in ways:
        way.start()


def address(text: str) -> Tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--to", type=address, required=True)
    parser.add_argument("--min", type=float, default=0.030)
    parser.add_argument("--max", type=float, default=0.050)
    parser.add_argument("--queue", type=int, default=256 * 1024)
    parser.add_argument("--lifetime", type=float, default=300.0)
    parser.add_argument("--max-conns", type=int, default=16)
    args = parser.parse_args(argv)
    end = time.monotonic() + args.lifetime
    listener = socket.create_server(args.listen)
    listener.settimeout(0.5)
    print(f"relaying {args.listen[0]}:{args.listen[1]} -> {args.to[0]}:{args.to[1]}", flush=True)
    taken = 0
    while time.monotonic() < end:
        if taken >= args.max_conns:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            continue
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        taken += 1
        client.settimeout(None)
        relay(client, args.to, args.min, args.max, args.queue)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
