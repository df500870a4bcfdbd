#!/usr/bin/env python3
"""What the uplink pump costs per call, without a switch.

Builds N UplinkSenders as the session does (an 8 kHz channel, 20 ms frames of 160 samples),
each connected to its own loopback TCP pair (the real path's socket, so ``send_room`` asks a
real kernel), opens their audio in the wire format (``--format``, 24 kHz pcm by default) and
runs the pump's pass (``UplinkPump._pass``) K times as its thread would: one pass per 10 ms
tick, each call's media thread capturing one frame every other pass (the calls' frames spread
over the two phases, as calls that started at different times are). Each sender's tick is a
real ``Housekeeping`` on a stand-in session (``--tick none`` for no tick), since the pump runs
it for every call on every pass.

Between passes, outside what is measured, the bench drains the peers' sockets.

Reports, for the passes alone:
  - CPU seconds of the pump per call-second of audio (``time.thread_time``), and per pass;
  - the pass's wall time p50 / p99 / max (a call waits for the calls before it in the pass);
  - with ``--callgrind``: the instructions of the passes, counted by valgrind's callgrind on a
    shorter run, per call-second. Each pass runs inside a one-line C function built for the run
    with ``cc`` (it calls a ctypes callback that runs the pass) and callgrind counts only inside
    it (``--toggle-collect``), so the set-up, the captures and the draining are left out.
    Instruction counts do not depend on what else the machine runs: use them for A/B.

    python3 bench/pump_cost.py --calls 100 --seconds 20
    python3 bench/pump_cost.py --calls 100 --seconds 2 --callgrind
    python3 bench/pump_cost.py --format pcmu --chunk-ms 60 --profile   # cProfile of the passes
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from openai_s2s.call.housekeeping import Housekeeping  # noqa: E402
from openai_s2s.call.pump import UplinkPump  # noqa: E402
from openai_s2s.call.uplink import UplinkSender  # noqa: E402
from openai_s2s.control.config import Settings  # noqa: E402
from openai_s2s.media.formats import BY_NAME  # noqa: E402

RATE, FRAME_SAMPLES = 8000, 160
TICK = 0.01
# The passes run inside pump_cost_measured, built at run time: callgrind counts only inside it.
# Called through a second function: callgrind takes libffi's call into a foreign function for
# a jump, and would not see the entry of the function ctypes calls.
HELPER_C = ("__attribute__((noinline)) int pump_cost_measured(int (*f)(void)) { return f(); }\n"
            "int pump_cost_run(int (*f)(void)) { return pump_cost_measured(f) + 0; }\n")


class _Ws:
    """What the sender uses of a websocket-client WebSocket: its socket and its send lock."""

    def __init__(self, sock):
        import threading
        self.sock = sock
        self.lock = threading.Lock()


class _Stand:
    """The parts of a session Housekeeping reads, set as a connected, quiet call has them."""

    def __init__(self, options, uplink):
        class _Obj:
            pass
        self.options = options
        self.uplink = uplink
        self.uuid = "bench"
        self.endpoint = _Obj()
        self.endpoint.display_url = "ws://127.0.0.1/v1/realtime"
        self.playout = _Obj()
        self.playout.frames_out, self.playout.active, self.playout.overruns = 0, False, 0
        self.call = _Obj()
        self.call.frame_samples, self.call.rate = FRAME_SAMPLES, RATE
        self.receiver = _Obj()
        self.receiver.last_rx = time.monotonic() + 1e9     # the server is never silent
        self.proto = _Obj()
        self.proto.response_id, self.proto.uplink_open = None, True
        self.dtmf = None

    def fire(self, *args):
        pass


def talk(samples: int) -> bytes:
    """A voiced, syllable-modulated signal (harmonics to 3.5 kHz), 16-bit LE at 8 kHz."""
    import numpy as np
    t = np.arange(samples) / RATE
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 26))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = 0.25 * voice / np.max(np.abs(voice)) * env + 0.005 * np.random.default_rng(1).standard_normal(samples)
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def build(calls: int, fmt_name: str, chunk_ms: int, tick: str):
    options = dict(Settings().values, chunk_ms=chunk_ms)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(calls)
    senders, peers, keep = [], [], []
    for _ in range(calls):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)
        holder = {}
        sender = UplinkSender(RATE, FRAME_SAMPLES, options, lambda now, h=holder: h["tick"](now),
                              lambda exc: (_ for _ in ()).throw(exc))
        if tick == "housekeeping":
            holder["tick"] = Housekeeping(_Stand(options, sender)).tick
        else:
            holder["tick"] = lambda now: None
        sender.connected(_Ws(client))
        sender.start_audio(BY_NAME[fmt_name])
        senders.append(sender)
        peers.append(server)
        keep.append(client)
    listener.close()
    return senders, peers, keep


def drain(peers, buf) -> int:
    got = 0
    for peer in peers:
        while True:
            try:
                n = peer.recv_into(buf)
            except BlockingIOError:
                break
            if not n:
                break
            got += n
    return got


def run(args) -> dict:
    senders, peers, keep = build(args.calls, args.format, args.chunk_ms, args.tick)
    pump = UplinkPump(tick=0.0, name="s2s-uplink-bench")
    pump._members.update(senders)       # as add() does, without starting its thread
    passes = int(round(args.seconds / TICK))
    audio = talk(RATE * 5)
    frame_bytes = 2 * FRAME_SAMPLES
    frames = [audio[i:i + frame_bytes] for i in range(0, len(audio), frame_bytes)]
    buf = bytearray(1 << 20)

    run_pass = pump._pass
    if args.under_callgrind:
        # each pass inside a C function of its own, the only code callgrind counts (--toggle-collect)
        measured = ctypes.CDLL(os.environ["PUMP_COST_HELPER"]).pump_cost_run
        measured.argtypes = [ctypes.c_void_p]
        callback = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: (pump._pass(), 0)[1])

        def run_pass():
            measured(ctypes.cast(callback, ctypes.c_void_p))

    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()

    # warm-up: the encoders are made on the first pass, numpy's caches filled
    for p in range(20):
        for i, sender in enumerate(senders):
            if (p + i) % 2 == 0:
                sender.capture(frames[(p // 2) % len(frames)])
        pump._pass()
        drain(peers, buf)
    appends0 = sum(s.appends for s in senders)
    walls, cpu = [], 0.0
    for p in range(passes):
        for i, sender in enumerate(senders):
            if (p + i) % 2 == 0:
                sender.capture(frames[(p // 2) % len(frames)])
        if profiler:
            profiler.enable()
        c0, w0 = time.thread_time(), time.perf_counter()
        run_pass()
        w1, c1 = time.perf_counter(), time.thread_time()
        if profiler:
            profiler.disable()
        cpu += c1 - c0
        walls.append(w1 - w0)
        drain(peers, buf)
    appends = sum(s.appends for s in senders) - appends0
    dropped = sum(s.dropped_total for s in senders)
    for sock in keep + peers:
        sock.close()
    walls.sort()
    call_seconds = args.calls * passes * TICK
    result = {
        "calls": args.calls, "format": args.format, "chunk_ms": args.chunk_ms, "tick": args.tick,
        "passes": passes, "appends": appends, "dropped": dropped,
        "cpu_s": round(cpu, 4),
        "cpu_per_call_second_ms": round(1000 * cpu / call_seconds, 4),
        "cpu_per_pass_us": round(1e6 * cpu / passes, 1),
        "pass_wall_ms": {"p50": round(1000 * walls[len(walls) // 2], 3),
                         "p99": round(1000 * walls[min(len(walls) - 1, int(0.99 * len(walls)))], 3),
                         "max": round(1000 * walls[-1], 3)},
        "core_share_at_this_load": round(cpu / (passes * TICK), 3),
    }
    if profiler:
        import pstats
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return result


def callgrind(args) -> dict:
    """Run this script under callgrind, counting only the passes; instructions per call-second."""
    tmp = tempfile.mkdtemp(prefix="pump_cost.")
    out, helper = os.path.join(tmp, "callgrind.out"), os.path.join(tmp, "measured.so")
    with open(os.path.join(tmp, "measured.c"), "w") as f:
        f.write(HELPER_C)
    subprocess.run(["cc", "-O0", "-shared", "-fPIC", "-o", helper, os.path.join(tmp, "measured.c")], check=True)
    cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=pump_cost_measured", f"--callgrind-out-file={out}",
           sys.executable, os.path.abspath(__file__), "--under-callgrind", "--calls", str(args.calls),
           "--seconds", str(args.seconds), "--format", args.format, "--chunk-ms", str(args.chunk_ms),
           "--tick", args.tick]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PUMP_COST_HELPER=helper))
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(out) as f:
        text = f.read()
    shutil.rmtree(tmp)
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    instructions = int(match.group(1))
    call_seconds = args.calls * result["passes"] * TICK
    result.pop("cpu_s"), result.pop("pass_wall_ms"), result.pop("core_share_at_this_load")
    result.pop("cpu_per_call_second_ms"), result.pop("cpu_per_pass_us")
    result["instructions"] = instructions
    result["instructions_per_call_second"] = int(instructions / call_seconds)
    result["instructions_per_pass"] = int(instructions / result["passes"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="call time simulated (passes x 10 ms)")
    parser.add_argument("--format", default="pcm", choices=sorted(BY_NAME))
    parser.add_argument("--chunk-ms", type=int, default=20)
    parser.add_argument("--tick", default="housekeeping", choices=("housekeeping", "none"))
    parser.add_argument("--profile", action="store_true", help="cProfile the passes (to stderr)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under callgrind")
    parser.add_argument("--under-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    result = callgrind(args) if args.callgrind else run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
