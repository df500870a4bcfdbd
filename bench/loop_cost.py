#!/usr/bin/env python3
"""What the unicast media loop costs per call, without a switch.

Runs the module's ``MediaLoop`` (switch/unicast.py) with N ``UnicastCall``s as a parked call
has them. A feeder process stands in for the switch's park loops: from one UDP socket per call
it sends the call's caller frame (20 ms, 8 kHz L16) every 20 ms, the calls spread over the
frame time, and it reads what the loop sends back. Each call's uplink is a real
``UplinkSender`` on a loopback TCP pair (drained by the feeder) with a real ``Housekeeping``
tick on a stand-in session, and its playout is a real ``PlayoutBuffer`` that a talker thread
fills as the receivers do: a reply of ``--talk`` seconds, then ``--pause`` seconds of silence,
each call's turn starting at its own time (its first frame rescheduled by ``audio_ready``).

Reports the loop thread's CPU (``time.thread_time``), its passes and wake-ups a second, and
with ``--profile`` a cProfile of the loop's passes (to stderr).

    python3 bench/loop_cost.py --calls 10 --seconds 10
    python3 bench/loop_cost.py --calls 10 --seconds 10 --profile
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from openai_s2s.call.housekeeping import Housekeeping  # noqa: E402
from openai_s2s.call.uplink import UplinkSender  # noqa: E402
from openai_s2s.control.config import Settings  # noqa: E402
from openai_s2s.media.formats import BY_NAME  # noqa: E402
from openai_s2s.media.playout import PlayoutBuffer  # noqa: E402
from openai_s2s.switch import unicast  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pump_cost import _Stand, _Ws, talk  # noqa: E402

RATE, FRAME_SAMPLES, FRAME = 8000, 160, 0.02

FEEDER = r"""
import socket, sys, time, select
calls, loop_port, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = []
for _ in range(calls):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.setblocking(False)
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
sys.stdin.readline()          # the loop has its calls
frame = bytes(320)
start = time.monotonic()
sent = [0] * calls
received = 0
while time.monotonic() - start < seconds:
    now = time.monotonic()
    for i, s in enumerate(socks):
        due = start + 0.02 * (sent[i] + i / calls)
        if now >= due:
            s.sendto(frame, ("127.0.0.1", loop_port)); sent[i] += 1
    for s in socks:
        while True:
            try:
                s.recv(8192); received += 1
            except BlockingIOError:
                break
    time.sleep(0.001)
print(sum(sent), received, flush=True)
"""


class _Channel:
    def __init__(self, uuid: str, port: int):
        self.uuid, self.rate, self.frame_samples = uuid, RATE, FRAME_SAMPLES
        self._port = port

    def variable(self, name):
        return None

    def start_unicast(self, host, port, avoid=()):
        return self._port

    def unicast_alive(self):
        return True


def drain_tcp(peers, stop):
    buf = bytearray(1 << 20)
    while not stop.is_set():
        for peer in peers:
            try:
                while peer.recv_into(buf):
                    pass
            except BlockingIOError:
                pass
        time.sleep(0.005)


def talker(calls, stop, talk_s, pause_s):
    """Each call's model speaks talk_s, then is silent pause_s, starting at its own phase; the
    audio comes as the receivers push it: faster than real time, in 100 ms deltas."""
    audio = talk(int(RATE * talk_s))
    delta = RATE // 10 * 2
    period = talk_s + pause_s
    start = time.monotonic()
    nxt = [start + period * i / len(calls) for i in range(len(calls))]
    while not stop.is_set():
        now = time.monotonic()
        for i, (call, playout) in enumerate(calls):
            if now >= nxt[i]:
                nxt[i] += period
                item = (f"item-{i}-{nxt[i]}", 0)
                empty = not playout.active
                for j in range(0, len(audio), delta):
                    playout.push(item, audio[j:j + delta], now)
                playout.end_item()
                if empty:
                    call.audio_ready()
        time.sleep(0.01)


def run(args) -> dict:
    loop = unicast.MediaLoop()
    loop_port = loop.port()
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(args.calls), str(loop_port),
                               str(args.seconds + 2)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = [int(p) for p in feeder.stdout.readline().split()]
    options = dict(Settings().values, chunk_ms=args.chunk_ms)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.calls)
    peers, keep, calls, senders = [], [], [], []
    for i, port in enumerate(ports):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)
        peers.append(server)
        keep.append(client)
        holder = {}
        sender = UplinkSender(RATE, FRAME_SAMPLES, options, lambda now, h=holder: h["tick"](now),
                              lambda exc: None)
        holder["tick"] = Housekeeping(_Stand(options, sender)).tick
        sender.connected(_Ws(client))
        sender.start_audio(BY_NAME[args.format])
        playout = PlayoutBuffer(RATE, FRAME_SAMPLES, 60000)
        call = unicast.UnicastCall(_Channel(f"call-{i}", port), loop)
        call.attach(sender.capture, playout.next_frame, lambda: None, mix=False, active=lambda p=playout: p.active)
        loop.add_uplink(sender)
        senders.append(sender)
        calls.append((call, playout))
    stop = threading.Event()
    threads = [threading.Thread(target=drain_tcp, args=(peers, stop), daemon=True),
               threading.Thread(target=talker, args=(calls, stop, args.talk, args.pause), daemon=True)]
    for t in threads:
        t.start()

    profiler = None
    step = loop._step
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()

        def profiled():
            profiler.enable()
            try:
                step()
            finally:
                profiler.disable()
        loop._step = profiled
        loop._worker._step = profiled   # OnDemandThread keeps the bound method
    feeder.stdin.write("go\n")
    feeder.stdin.flush()
    thread = loop._worker.thread
    time.sleep(1.0)   # warm-up
    tid = thread.native_id
    cpu0 = _thread_cpu(tid)
    passes0, wall0 = loop._passes, time.monotonic()
    ctx0 = _ctx(tid)
    time.sleep(args.seconds)
    cpu1, passes1, wall1, ctx1 = _thread_cpu(tid), loop._passes, time.monotonic(), _ctx(tid)
    stop.set()
    for call, _ in calls:
        call.detach()
    for sender in [c for c in loop._uplinks]:
        loop.remove_uplink(sender)
    out, _ = feeder.communicate(timeout=10)
    sent, received = (int(x) for x in out.split())
    seconds = wall1 - wall0
    result = {"calls": args.calls, "format": args.format, "chunk_ms": args.chunk_ms,
              "seconds": round(seconds, 2),
              "loop_cpu_share": round((cpu1 - cpu0) / seconds, 4),
              "loop_cpu_per_call_share": round((cpu1 - cpu0) / seconds / args.calls, 5),
              "passes_per_s": round((passes1 - passes0) / seconds, 1),
              "voluntary_switches_per_s": round((ctx1 - ctx0) / seconds, 1),
              "cpu_per_pass_us": round(1e6 * (cpu1 - cpu0) / max(1, passes1 - passes0), 1),
              "frames_in": sum(c.frames_read for c, _ in calls),
              "frames_out": sum(c.frames_written for c, _ in calls),
              "feeder_sent": sent, "feeder_received": received,
              "appends": sum(s.appends for s in senders)}
    if profiler:
        import pstats
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return result


def _thread_cpu(tid: int) -> float:
    """Seconds on a CPU: the scheduler's own count (schedstat), not the tick-sampled utime."""
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _ctx(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--format", default="pcm", choices=sorted(BY_NAME))
    parser.add_argument("--chunk-ms", type=int, default=Settings().values["chunk_ms"])
    parser.add_argument("--talk", type=float, default=2.0)
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--profile", action="store_true")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
