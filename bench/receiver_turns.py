#!/usr/bin/env python3
"""How many receiver threads taking the GIL at once cost a loop that must wake on time.

Not a test. One "loop" thread wakes on a 20 ms grid and does a fixed amount of the uplink's
Python work (the real ``UplinkEncoder`` on 40 ms chunks, base64, one frame each) for N calls,
as the unicast loop does. N "receiver" threads each block on their own socket; a feeder
process sends each of them a realistic ``response.output_audio.delta`` (100 ms of 24 kHz pcm,
as the local server paces them) ten times a second while the call's model talks (2 s of 5),
and the receiver does what the module's receiver does with one: orjson, base64, the real
``DownlinkDecoder`` (24 to 8 kHz) and a real ``PlayoutBuffer`` push.

``--turns`` makes the receivers take a shared lock around their Python work (waiting on their
sockets without it), so that at most one of them is queued for the GIL beside the loop.
``--hub`` reads every call's socket in one thread (epoll) instead of a thread a call: what
one reader for all the calls' websockets would save in wake-ups. ``--spread`` has the feeder
send each call's events at the call's own phase of the 100 ms, as a server pacing each reply
from its own start does, rather than all calls at once.
Reports the loop's lateness after each grid tick (p50, p99, max), how many wakes were more
than 20 ms late, and the CPU of the loop and of the rest (the receivers). Run as root under
``chrt -f 1`` to give every thread the switch's SCHED_FIFO 1.

    python3 bench/receiver_turns.py --calls 100 --seconds 15 [--turns | --hub] [--spread]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import subprocess
import struct
import sys
import threading
import time
from typing import List, Optional

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from openai_s2s.media.codec import DownlinkDecoder, UplinkEncoder  # noqa: E402
from openai_s2s.media.formats import BY_NAME  # noqa: E402
from openai_s2s.media.playout import PlayoutBuffer  # noqa: E402

FEEDER = r"""
import socket, struct, sys, time
calls, seconds, path, spread = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
event = open(path, "rb").read()
socks = []
for i in range(calls):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path + ".sock"); socks.append(s)
start = time.monotonic()
step = 0.1 / calls if spread else 0.1     # spread: one call a step, each at its own phase
n = 0
while time.monotonic() - start < seconds:
    tick = start + step * n
    delay = tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    t = step * n
    for i in ([n % calls] if spread else range(calls)):
        phase = (t + 5.0 * i / calls) % 5.0
        if phase < 2.0:
            socks[i].sendall(len(event).to_bytes(4, "big") + struct.pack("!d", time.monotonic()) + event)
    n += 1
for s in socks:
    s.close()
"""


def delta_event() -> bytes:
    pcm = (np.sin(np.arange(2400) * 0.05) * 8000).astype("<i2").tobytes()   # 100 ms at 24 kHz
    return orjson.dumps({"type": "response.output_audio.delta", "event_id": "event_x",
                         "response_id": "resp_x", "item_id": "item_x", "output_index": 0,
                         "content_index": 0, "delta": base64.b64encode(pcm).decode()})


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = sock.recv(n - len(out))
        if not got:
            raise EOFError
        out += got
    return out


def handle(sock: socket.socket, head: bytes, decoder: DownlinkDecoder, playout: PlayoutBuffer,
           delays: List[float]) -> None:
    """What the module's receiver does with one audio delta."""
    body = recv_exact(sock, int.from_bytes(head[:4], "big"))
    event = orjson.loads(body)
    pcm = decoder.decode(base64.b64decode(event["delta"]))
    playout.push(("item_x", 0), pcm, time.monotonic())
    while playout.queued_frames > 50:
        playout.next_frame()
    delays.append(time.monotonic() - struct.unpack("!d", head[4:])[0])


def receiver(sock: socket.socket, turn: Optional[threading.Lock], stop: threading.Event,
             delays: List[float]) -> None:
    decoder = DownlinkDecoder(BY_NAME["pcm"], 8000)
    playout = PlayoutBuffer(8000, 160, 2000)
    while not stop.is_set():
        try:
            head = recv_exact(sock, 12)   # waits without the turn
            if turn is not None:
                turn.acquire()
            try:
                handle(sock, head, decoder, playout, delays)
            finally:
                if turn is not None:
                    turn.release()
        except (EOFError, OSError):
            return


def hub(socks: List[socket.socket], stop: threading.Event, delays: List[float]) -> None:
    """One thread for every call's socket: the feeder writes each message whole, so a readable
    socket holds at least its header."""
    poller = select.epoll()
    calls = {}
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
        calls[sock.fileno()] = (sock, DownlinkDecoder(BY_NAME["pcm"], 8000), PlayoutBuffer(8000, 160, 2000))
    while not stop.is_set():
        for fd, _ in poller.poll(0.5):
            sock, decoder, playout = calls[fd]
            try:
                handle(sock, recv_exact(sock, 12), decoder, playout, delays)
            except (EOFError, OSError):
                poller.unregister(fd)
    poller.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--turns", action="store_true")
    parser.add_argument("--hub", action="store_true", help="one thread reads every call's socket")
    parser.add_argument("--spread", action="store_true", help="each call's events at its own phase")
    parser.add_argument("--switch-interval", type=float, default=0.0005)
    parser.add_argument("--loop-ms", type=float, default=6.0,
                        help="the loop's Python work per tick, in all (the unicast loop's at 100 calls: 6-8 ms)")
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_interval)
    path = f"/tmp/receiver_turns.{os.getpid()}"
    with open(path, "wb") as f:
        f.write(delta_event())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".sock")
    server.listen(args.calls)
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(args.calls), str(args.seconds), path,
                               "1" if args.spread else "0"])
    turn = threading.Lock() if args.turns else None
    stop = threading.Event()
    threads = []
    delays: List[float] = []
    conns = [server.accept()[0] for _ in range(args.calls)]
    if args.hub:
        threads.append(threading.Thread(target=hub, args=(conns, stop, delays), daemon=True))
    else:
        threads.extend(threading.Thread(target=receiver, args=(conn, turn, stop, delays), daemon=True)
                       for conn in conns)
    for t in threads:
        t.start()
    process_cpu0 = time.process_time()
    encoders = [UplinkEncoder(8000, BY_NAME["pcm"]) for _ in range(args.calls)]
    frame = (np.sin(np.arange(320) * 0.1) * 5000).astype("<i2").tobytes()
    late, done = [], []
    start = time.monotonic()
    cpu0 = time.thread_time()
    n = 0
    while time.monotonic() - start < args.seconds - 0.5:
        n += 1
        tick = start + 0.02 * n
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        late.append(time.monotonic() - tick)
        # half the calls complete a 40 ms chunk each tick; the rest of the work in small steps
        # of Python, as the loop's per-call serving is
        work_cpu = time.thread_time() + args.loop_ms / 1000
        for enc in encoders[n % 2::2]:
            data = base64.b64encode(enc.encode(frame))
            _ = b'{"type":"input_audio_buffer.append","audio":"' + data + b'"}'
        while time.thread_time() < work_cpu:
            sum(range(50))
        done.append(time.monotonic() - tick)
    loop_cpu = time.thread_time() - cpu0
    others_cpu = time.process_time() - process_cpu0 - loop_cpu
    stop.set()
    feeder.wait()
    for suffix in ("", ".sock"):
        os.unlink(path + suffix)
    late_ms = np.array(late) * 1000
    done_ms = np.array(done) * 1000
    print(json.dumps({"calls": args.calls, "turns": args.turns, "hub": args.hub, "spread": args.spread,
                      "ticks": len(late), "events": len(delays),
                      "late_p50_ms": round(float(np.percentile(late_ms, 50)), 2),
                      "late_p99_ms": round(float(np.percentile(late_ms, 99)), 2),
                      "late_max_ms": round(float(late_ms.max()), 2),
                      "ticks_late_over_20ms": int((late_ms > 20).sum()),
                      "pass_end_p99_ms": round(float(np.percentile(done_ms, 99)), 2),
                      "pass_end_max_ms": round(float(done_ms.max()), 2),
                      "event_to_played_p50_ms": round(float(np.percentile(delays, 50)) * 1000, 2),
                      "event_to_played_p99_ms": round(float(np.percentile(delays, 99)) * 1000, 2),
                      "loop_cpu_share": round(loop_cpu / (args.seconds - 0.5), 3),
                      "receivers_cpu_share": round(others_cpu / (args.seconds - 0.5), 3)}))


if __name__ == "__main__":
    main()
