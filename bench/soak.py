"""Soak: concurrent calls that come and go for a long time, in a real switch, against the local
Realtime server over a real network path; then what the switch still holds.

    python3 bench/soak.py --calls 50 --minutes 30 --path netns

Each of ``--calls`` slots loops until the time is up: a loopback call parked with
send_silence_when_idle, a session to the local server, a session.update, the caller talking
(a looped recording), a random 20-60 s, then a hangup. ``--path netns`` puts the server in a
network namespace behind a 1500-MTU veth with a bandwidth cap, packet loss and delay
(openai_s2s/tools/netpath.py); ``loopback`` runs it on 127.0.0.1.

Before and after: the switch's threads, open fds and RSS (after a gc.collect and malloc_trim in
the switch), measured once the module has served one call (its imports are loaded then), and
the ERR lines in the switch's log. Not a test: it prints JSON and exits 0, or 2 if it cannot run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench import KEY, PATH, TRIM_MODULE, rss_mb, session_update, talk_wav  # noqa: E402
from openai_s2s.tools import testswitch as realswitch  # noqa: E402

FORMAT = "pcmu"   # G.711 both ways: 64 kbit/s a direction, so 50 calls fit the path's cap


def process_counts(pid: int) -> Dict[str, float]:
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": round(rss_mb(pid), 1)}


class Soak:
    def __init__(self, fs: realswitch.RealSwitch, server_url: str, talk: Path, deadline: float,
                 min_call: float, max_call: float):
        self.fs = fs
        self.url = server_url
        self.talk = talk
        self.deadline = deadline
        self.min_call, self.max_call = min_call, max_call
        self.esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
        self.lock = threading.Lock()   # one ESL connection, one command at a time
        self.counts = {"calls": 0, "create_failed": 0, "not_connected": 0, "update_failed": 0,
                       "left_behind": 0}
        self.problems: List[str] = []

    def api(self, command: str) -> str:
        with self.lock:
            return self.esl.api(command)

    def status(self, uuid: str) -> Dict:
        reply = self.api(f"uuid_openai_s2s {uuid} status")
        return json.loads(reply[4:]) if reply.startswith("+OK") else {}

    def count(self, what: str, detail: str = "") -> None:
        with self.lock:
            self.counts[what] += 1
            if detail and len(self.problems) < 50:
                self.problems.append(f"{what}: {detail}")

    def slot(self, index: int) -> None:
        rng = random.Random(index)
        serial = 0
        while time.monotonic() + self.min_call < self.deadline:
            serial += 1
            a = f"soak-{index}-{serial}"
            reply = self.api(f"originate {{origination_uuid={a},loopback_bowout=false}}loopback/park/default "
                             f"&endless_playback({self.talk})")
            if not reply.startswith("+OK"):
                self.count("create_failed", f"originate {reply}")
                time.sleep(1)
                continue
            b = self.api(f"uuid_getvar {a} other_loopback_leg_uuid")
            self.count("calls")
            reply = self.api(f"uuid_openai_s2s {b} session.create {self.url} {PATH} bearer {KEY}")
            if not reply.startswith("+OK"):
                self.count("create_failed", reply)
            else:
                connected = False
                until = time.monotonic() + 20
                while time.monotonic() < until and not connected:
                    connected = self.status(b).get("state") == "connected"
                    time.sleep(0.25)
                if not connected:
                    self.count("not_connected", f"{b}: {self.status(b).get('state')}")
                elif not self.api(f"uuid_openai_s2s {b} client.event {session_update(FORMAT)}").startswith("+OK"):
                    self.count("update_failed", b)
            hold = rng.uniform(self.min_call, self.max_call)
            time.sleep(max(0.0, min(hold, self.deadline - time.monotonic())))
            self.api(f"uuid_kill {a}")
            until = time.monotonic() + 10
            while time.monotonic() < until and self.status(b):
                time.sleep(0.25)
            if self.status(b):
                self.count("left_behind", b)


def settle(fs: realswitch.RealSwitch, esl: realswitch.Esl) -> Dict[str, float]:
    """Counts once no call is left: after the module's delayed trim, and one of the switch's own."""
    until = time.monotonic() + 30
    while time.monotonic() < until and "0 total" not in esl.api("show channels count"):
        time.sleep(0.5)
    time.sleep(3)   # the module trims 2 s after its last session ends
    esl.api("python openai_s2s_bench_trim")
    return process_counts(fs.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--min-call", type=float, default=20)
    parser.add_argument("--max-call", type=float, default=60)
    parser.add_argument("--path", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--out", default="soak.json")
    args = parser.parse_args()
    reason = realswitch.missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="openai_s2s-soak-"))
    talk = workdir / "talk.wav"
    talk_wav(talk)
    path = None
    if args.path == "netns":
        from openai_s2s.tools import netpath
        why = netpath.why_not()
        if why:
            print(f"cannot run: {why}", file=sys.stderr)
            return 2
        cycles = int(args.calls * args.minutes * 60 / args.min_call * 1.5) + 10   # the relay's bound
        path = netpath.NetPath(api_key=KEY, lifetime=args.minutes * 60 + 900, rate="100mbit",
                               max_conns=cycles, server_args=("--reply", "echo", "--no-record")).__enter__()
        server = None
        url = path.url
    else:
        port = realswitch.free_port()
        server = subprocess.Popen([sys.executable, "-m", "openai_s2s.localserver", "--port", str(port),
                                   "--api-key", KEY, "--reply", "echo", "--no-record"], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"ws://127.0.0.1:{port}"
        until = time.monotonic() + 20
        while time.monotonic() < until:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
    fs = realswitch.RealSwitch(workdir / "fs", realswitch.PARK_EXTENSIONS)
    result: Dict = {"calls": args.calls, "minutes": args.minutes, "path": args.path, "url": url}
    try:
        fs.write_conf()
        fs.set_module_params(key_over_ws="true")   # the namespace's address is not loopback
        (fs.workdir / "scripts" / "openai_s2s_bench_trim.py").write_text(TRIM_MODULE)
        fs.start(write_conf=False)
        esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
        result["at_start"] = process_counts(fs.pid)
        warm = Soak(fs, url, talk, time.monotonic() + 21, 20, 20)   # one call: the module's imports
        warm.slot(0)
        result["warmup"] = warm.counts
        result["before"] = settle(fs, esl)
        soak = Soak(fs, url, talk, time.monotonic() + args.minutes * 60, args.min_call, args.max_call)
        slots = [threading.Thread(target=soak.slot, args=(i,), daemon=True) for i in range(args.calls)]
        for i, slot in enumerate(slots):
            slot.start()
            time.sleep(min(1.0, args.min_call / max(1, args.calls)))   # stagger the starts
        peak = process_counts(fs.pid)
        for slot in slots:
            slot.join(args.minutes * 60 + args.max_call + 120)
        result["during"] = peak
        result["after"] = settle(fs, esl)
        result["counts"], result["problems"] = soak.counts, soak.problems
        log = fs.log_text().splitlines()
        errors = [line for line in log if "[ERR]" in line or "[CRIT]" in line]
        result["err_lines"] = len(errors)
        result["err_examples"] = errors[:20]
        result["module_err_lines"] = len([line for line in errors if "openai_s2s" in line])
        for key in ("threads", "fds", "rss_mb"):
            result[f"{key}_change"] = round(result["after"][key] - result["before"][key], 1)
    finally:
        fs.stop()
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        if path is not None:
            path.close()
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
