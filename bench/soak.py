"""Soak: concurrent calls that come and go for a long time, in a real switch, against the local
Realtime server over a real network path; then what the switch still holds.

    python3 bench/soak.py --calls 50 --minutes 30 --path netns [--media unicast]

Each of ``--calls`` slots loops until the time is up: a loopback call parked with
send_silence_when_idle, a session to the local server, a session.update, the caller talking
(a looped recording), a random 20-60 s, then a hangup. ``--path netns`` puts the server in a
network namespace behind a 1500-MTU veth with a bandwidth cap, packet loss and delay
(openai_s2s/tools/netpath.py); ``loopback`` runs it on 127.0.0.1.

Before and after: the switch's threads (by name: the module names its own ``s2s-*`` and
``openai_s2s-*``, the switch's are all ``freeswitch``; and the module's own count from
``status``), open fds, RSS and where its anonymous part is (glibc's malloc arenas, or other
mappings: the embedded Python's 1 MiB arenas, thread stacks), what malloc and the embedded Python
hold, and the switch's session thread pool; at ``--idle-at`` seconds after the last call, the
last one the result, as the module left them and after a gc.collect and malloc_trim of the
soak's own; once the module has served one call (its imports are loaded then). A minute's sample
during the calls; the ERR lines in the switch's log. ``--impl none`` runs the same calls with no
session: what the switch itself keeps, for the module's share by difference. Not a test: it
prints JSON and a table, and exits 0, or 2 if it cannot run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
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


# Run inside the switch (``python openai_s2s_soak_probe``): what the embedded Python holds, and
# glibc's malloc arenas (malloc_info), which every thread of the switch allocates from.
PROBE_MODULE = r"""
import ctypes, gc, json, os, re, sys, tempfile, threading


def _captured(write):
    fd, name = tempfile.mkstemp()
    try:
        write(fd)
        with open(name) as f:
            return f.read()
    finally:
        os.close(fd)
        os.unlink(name)


def _malloc_info(fd):
    libc = ctypes.CDLL(None)
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = (ctypes.c_int, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    fp = libc.fdopen(os.dup(fd), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)


def _pymalloc(fd):
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _number(pattern, text):
    m = re.search(pattern, text)
    return int(m.group(1).replace(",", "")) if m else 0


def fsapi(session, stream, env, args):
    xml = _captured(_malloc_info)
    heaps = re.findall(r'<heap nr="\d+">.*?</heap>', xml, re.S)
    tail = xml.rsplit("</heap>", 1)[-1]
    current = sum(_number(r'<system type="current" size="(\d+)"/>', h) for h in heaps)
    free = _number(r'<total type="rest" count="\d+" size="(\d+)"/>', tail)
    stats = _captured(_pymalloc)
    names = {}
    for t in threading.enumerate():
        key = re.sub(r"-[0-9a-f]{8}$", "-*", t.name)
        names[key] = names.get(key, 0) + 1
    mb = lambda n: round(n / 2**20, 1)
    stream.write(json.dumps({
        "threads": names, "gc_objects": len(gc.get_objects()),
        "allocated_blocks": sys.getallocatedblocks(),
        "pymalloc_arenas": _number(r"# arenas allocated current\s*=\s*([\d,]+)", stats),
        "pymalloc_in_use_mb": mb(_number(r"# bytes in allocated blocks\s*=\s*([\d,]+)", stats)),
        "malloc_arenas": len(heaps), "malloc_arena_mb": mb(current), "malloc_free_mb": mb(free),
        "malloc_in_use_mb": mb(current - free),
        "malloc_mmap_mb": mb(_number(r'<total type="mmap" count="\d+" size="(\d+)"/>', tail))}))
"""


def process_counts(pid: int) -> Dict[str, float]:
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": round(rss_mb(pid), 1)}


MODULE_THREADS = ("s2s-", "openai_s2s")   # the module names its OS threads; the switch's are "freeswitch"


def thread_names(pid: int) -> Dict[str, int]:
    """The switch's OS threads by name (comm), counted; a trailing uuid prefix is folded."""
    names: Dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        except OSError:
            continue
        name = re.sub(r"-[0-9a-f]{4,}$", "-*", name)
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda kv: (-kv[1], kv[0])))


HEAP_MAX = 64 << 20   # glibc's non-main arenas are heaps at 64 MiB-aligned addresses (HEAP_MAX_SIZE)


def memory_mb(pid: int) -> Dict[str, float]:
    """Anonymous RSS, and the part of it in glibc's malloc arenas ([heap] and the arenas' heaps);
    the rest is mostly the embedded Python's own arenas (1 MiB mmaps) and thread stacks."""
    anonymous = arenas = 0
    mapping = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 5)
        if "-" in first[0] and len(first) >= 5 and ":" not in first[0]:
            start = int(first[0].split("-")[0], 16)
            name = first[5] if len(first) > 5 else ""
            mapping = name == "[heap]" or (not name and first[1].startswith("rw") and start % HEAP_MAX == 0)
        elif line.startswith("Anonymous:"):
            kb = int(line.split()[1])
            anonymous += kb
            arenas += kb if mapping else 0
    return {"anonymous_mb": round(anonymous / 1024, 1), "malloc_arenas_rss_mb": round(arenas / 1024, 1),
            "other_anonymous_mb": round((anonymous - arenas) / 1024, 1)}


def snapshot(fs: realswitch.RealSwitch, esl: realswitch.Esl) -> Dict:
    """The switch's threads (by name, and the module's own count), fds, RSS and its parts."""
    counts: Dict = process_counts(fs.pid)
    names = thread_names(fs.pid)
    counts["module_os_threads"] = sum(n for name, n in names.items() if name.startswith(MODULE_THREADS))
    counts["thread_names"] = names
    counts.update(memory_mb(fs.pid))
    counts["session_pool"] = esl.api("fsctl debug_pool").replace("Thread pool: ", "")
    reply = esl.api("uuid_openai_s2s status")
    counts["module_status_threads"] = json.loads(reply[4:])["threads"] if reply.startswith("+OK") else None
    reply = esl.api("python openai_s2s_soak_probe")
    try:
        counts["python_and_malloc"] = json.loads(reply)
    except ValueError:
        counts["python_and_malloc"] = reply[:300]
    return counts


class Soak:
    def __init__(self, fs: realswitch.RealSwitch, server_url: str, talk: Path, deadline: float,
                 min_call: float, max_call: float, sessions: bool = True, media: str = "bug"):
        """sessions: False for the same calls with no openai_s2s session (``--impl none``);
        media: the extension the module's channel is parked in (testswitch.PARK_EXTENSIONS)."""
        self.fs = fs
        self.sessions = sessions
        self.park = "park" if media == "bug" else "park_unicast"
        self.url = server_url
        self.talk = talk
        self.deadline = deadline
        self.min_call, self.max_call = min_call, max_call
        self.esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
        self.lock = threading.Lock()   # one ESL connection, one command at a time
        self.counts = {"calls": 0, "create_failed": 0, "not_connected": 0, "update_failed": 0,
                       "left_behind": 0}
        self.problems: List[str] = []
        self.paths: Dict[str, int] = {}   # the media path each connected session took

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

    def session(self, b: str) -> None:
        reply = self.api(f"uuid_openai_s2s {b} session.create {self.url} {PATH} bearer {KEY}")
        if not reply.startswith("+OK"):
            self.count("create_failed", reply)
            return
        connected = False
        until = time.monotonic() + 20
        while time.monotonic() < until and not connected:
            connected = self.status(b).get("state") == "connected"
            time.sleep(0.25)
        if connected:
            path = (self.status(b).get("media") or {}).get("path")
            with self.lock:
                self.paths[str(path)] = self.paths.get(str(path), 0) + 1
        if not connected:
            self.count("not_connected", f"{b}: {self.status(b).get('state')}")
        elif not self.api(f"uuid_openai_s2s {b} client.event {session_update(FORMAT)}").startswith("+OK"):
            self.count("update_failed", b)

    def slot(self, index: int) -> None:
        rng = random.Random(index)
        serial = 0
        while time.monotonic() + self.min_call < self.deadline:
            serial += 1
            a = f"soak-{index}-{serial}"
            reply = self.api(f"originate {{origination_uuid={a},loopback_bowout=false}}loopback/{self.park}/default "
                             f"&endless_playback({self.talk})")
            if not reply.startswith("+OK"):
                self.count("create_failed", f"originate {reply}")
                time.sleep(1)
                continue
            b = self.api(f"uuid_getvar {a} other_loopback_leg_uuid")
            self.count("calls")
            if self.sessions:
                self.session(b)
            hold = rng.uniform(self.min_call, self.max_call)
            time.sleep(max(0.0, min(hold, self.deadline - time.monotonic())))
            self.api(f"uuid_kill {a}")
            until = time.monotonic() + 10
            while self.sessions and time.monotonic() < until and self.status(b):
                time.sleep(0.25)
            if self.sessions and self.status(b):
                self.count("left_behind", b)

    def close(self) -> None:
        """End the ESL connection (and with it the switch's listener thread for it)."""
        self.esl.close()


def settle(fs: realswitch.RealSwitch, esl: realswitch.Esl) -> float:
    """Wait until no call is left; the monotonic time it was seen."""
    until = time.monotonic() + 30
    while time.monotonic() < until and "0 total" not in esl.api("show channels count"):
        time.sleep(0.5)
    return time.monotonic()


def sample(fs: realswitch.RealSwitch, esl: realswitch.Esl, started: float) -> Dict:
    """A minute's point during the soak: is anything climbing with the calls' count steady?"""
    r = snapshot(fs, esl)
    pm = r["python_and_malloc"] if isinstance(r["python_and_malloc"], dict) else {}
    return {"minute": round((time.monotonic() - started) / 60, 1), "channels": esl.api("show channels count"),
            "threads": r["threads"], "module_os_threads": r["module_os_threads"], "fds": r["fds"],
            "rss_mb": r["rss_mb"], "malloc_arenas_rss_mb": r["malloc_arenas_rss_mb"],
            "other_anonymous_mb": r["other_anonymous_mb"], "pymalloc_arenas": pm.get("pymalloc_arenas"),
            "allocated_blocks": pm.get("allocated_blocks"), "load_1min": round(os.getloadavg()[0], 2)}


def measure(fs: realswitch.RealSwitch, esl: realswitch.Esl, trim: bool) -> Dict:
    """The counts as the module left them; with ``trim``, after a gc.collect and malloc_trim of
    the soak's own (``rss_mb_before_soak_trim`` is the RSS before it)."""
    untrimmed = rss_mb(fs.pid)
    if trim:
        esl.api("python openai_s2s_bench_trim")
    counts = snapshot(fs, esl)
    if trim:
        counts["rss_mb_before_soak_trim"] = round(untrimmed, 1)
    return counts


def measure_idle(fs: realswitch.RealSwitch, esl: realswitch.Esl, at: List[float]) -> Dict[str, Dict]:
    """Counts at each of ``at`` seconds after the last call ended, the last after a trim of the
    soak's own. A worker of the switch's session thread pool ends once it has waited 5 s for work
    (switch_core_session.c), and the module trims at 0, 2 and 10 s after its last session: sooner
    than 10 s, the switch still holds the calls' threads, and not all the heap is handed back."""
    idle_since = settle(fs, esl)
    out = {}
    for i, seconds in enumerate(at):
        time.sleep(max(0.0, idle_since + seconds - time.monotonic()))
        out[f"+{seconds:g}s"] = measure(fs, esl, trim=i == len(at) - 1)
    return out


CHANGES = (("threads",), ("module_os_threads",), ("module_status_threads",), ("fds",), ("rss_mb",),
           ("rss_mb_before_soak_trim",),
           ("anonymous_mb",), ("malloc_arenas_rss_mb",), ("other_anonymous_mb",),
           ("python_and_malloc", "malloc_arenas"),
           ("python_and_malloc", "malloc_in_use_mb"), ("python_and_malloc", "malloc_free_mb"),
           ("python_and_malloc", "pymalloc_arenas"), ("python_and_malloc", "allocated_blocks"),
           ("python_and_malloc", "gc_objects"))


def changes(before: Dict, after: Dict) -> Dict[str, float]:
    out = {}
    for keys in CHANGES:
        a, b = before, after
        for key in keys:
            a = a.get(key) if isinstance(a, dict) else None
            b = b.get(key) if isinstance(b, dict) else None
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            out[keys[-1]] = round(b - a, 1)
    return out


def table(result: Dict) -> str:
    rows = [("at start", result["at_start"])]
    rows += [(f"before {k}", v) for k, v in result["before_idle"].items()]
    rows += [("during", result["during"])]
    rows += [(f"after {k}", v) for k, v in result["after_idle"].items()]
    lines = ["| | threads (module's) | fds | RSS MB (before the soak's trim) "
             "| anonymous: in malloc arenas + other, MB | malloc arenas, in use MB | pymalloc arenas "
             "| session pool |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        pm = r["python_and_malloc"] if isinstance(r["python_and_malloc"], dict) else {}
        untrimmed = f" ({r['rss_mb_before_soak_trim']})" if "rss_mb_before_soak_trim" in r else ""
        lines.append(f"| {name} | {r['threads']} ({r['module_os_threads']}) | {r['fds']} | "
                     f"{r['rss_mb']}{untrimmed} | "
                     f"{r['malloc_arenas_rss_mb']} + {r['other_anonymous_mb']} | "
                     f"{pm.get('malloc_arenas')}, {pm.get('malloc_in_use_mb')} | "
                     f"{pm.get('pymalloc_arenas')} | {r['session_pool']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--min-call", type=float, default=20)
    parser.add_argument("--max-call", type=float, default=60)
    parser.add_argument("--path", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--media", choices=("bug", "unicast"), default="bug",
                        help="the module's channel parked with send_silence_when_idle (the media "
                             "bug) or without it (unicast, the unicast loop)")
    parser.add_argument("--impl", choices=("python", "none"), default="python",
                        help="none: the same calls with no openai_s2s session, for the switch's own share")
    parser.add_argument("--out", default="soak.json")
    parser.add_argument("--idle-at", type=float, nargs="+", default=[3, 10, 60, 120],
                        help="seconds after the last call at which to measure (each after a trim); "
                             "the last is the result")
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
    sessions = args.impl == "python"
    result: Dict = {"impl": args.impl, "calls": args.calls, "minutes": args.minutes, "path": args.path,
                    "url": url, "idle_at": args.idle_at}
    try:
        fs.write_conf()
        fs.set_module_params(key_over_ws="true")   # the namespace's address is not loopback
        (fs.workdir / "scripts" / "openai_s2s_bench_trim.py").write_text(TRIM_MODULE)
        (fs.workdir / "scripts" / "openai_s2s_soak_probe.py").write_text(PROBE_MODULE)
        fs.start(write_conf=False)
        esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
        until = time.monotonic() + 30   # the startup script registers the command after "UP"
        while "uuid_openai_s2s" not in esl.api("show api uuid_openai_s2s") and time.monotonic() < until:
            time.sleep(0.2)
        result["at_start"] = snapshot(fs, esl)
        warm = Soak(fs, url, talk, time.monotonic() + 21, 20, 20, sessions, args.media)   # the module's imports
        warm.slot(0)
        warm.close()
        result["warmup"] = warm.counts
        if warm.counts["calls"] != 1 or any(n for what, n in warm.counts.items() if what != "calls"):
            print(f"cannot run: the warm-up call failed: {warm.counts} {warm.problems}", file=sys.stderr)
            return 2
        result["before_idle"] = measure_idle(fs, esl, args.idle_at)
        result["before"] = result["before_idle"][f"+{args.idle_at[-1]:g}s"]
        soak = Soak(fs, url, talk, time.monotonic() + args.minutes * 60, args.min_call, args.max_call,
                    sessions, args.media)
        slots = [threading.Thread(target=soak.slot, args=(i,), daemon=True) for i in range(args.calls)]
        for i, slot in enumerate(slots):
            slot.start()
            time.sleep(min(1.0, args.min_call / max(1, args.calls)))   # stagger the starts
        peak = snapshot(fs, esl)
        load, samples, started = [], [], time.monotonic()
        for slot in slots:
            while slot.is_alive():
                slot.join(60)
                load.append(round(os.getloadavg()[0], 2))
                if slot.is_alive():
                    samples.append(sample(fs, esl, started))
        result["samples"] = samples
        soak.close()
        result["during"] = peak
        result["load_1min"] = {"max": max(load, default=None),
                               "mean": round(sum(load) / max(1, len(load)), 2)}
        result["after_idle"] = measure_idle(fs, esl, args.idle_at)
        result["after"] = result["after_idle"][f"+{args.idle_at[-1]:g}s"]
        result["counts"], result["problems"], result["media_paths"] = soak.counts, soak.problems, soak.paths
        log = fs.log_text().splitlines()
        errors = [line for line in log if "[ERR]" in line or "[CRIT]" in line]
        result["err_lines"] = len(errors)
        result["err_examples"] = errors[:20]
        result["module_err_lines"] = len([line for line in errors if "openai_s2s" in line])
        result["change"] = changes(result["before"], result["after"])
        result["change_by_idle"] = {k: changes(result["before"], v) for k, v in result["after_idle"].items()}
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
    if "change" in result:
        print(table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
