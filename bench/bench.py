"""openai_s2s benchmark: N concurrent two-way calls in a real FreeSWITCH (not a test).

    python3 bench/bench.py --shape parked|agent|bridged --calls 1,25,50,100 --seconds 20 \
        [--chunk-ms 40] --out bench.json [--compare old.json]

Starts the local Realtime server (its own process) and a FreeSWITCH from the tests'
minimal configuration (openai_s2s/tools/testswitch.py), places N loopback calls whose caller leg
plays speech-like audio in a loop (2 s talk, 3 s pause) while the server answers each turn
with streamed audio, and reports per N: switch CPU per call and the module's share of it, the
local server's CPU, per-thread CPU of the switch by thread name, media lateness (gap between
frames), uplink and downlink latency, barge-in, underruns, RSS, the media path each call took,
and how much of the caller audio the module captured reached the server (the server's own
count), plus a resampling-quality figure. Prints a table and writes JSON; --compare prints
the change against an earlier run.

Shapes: ``parked`` (the ESL pattern: a parked call, session.create over ESL), ``agent`` (the
dialplan application ``python openai_s2s`` on its own channel) and ``bridged`` (the session on
one leg of a bridged call: the media bug).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from openai_s2s.control.config import Settings  # noqa: E402
from openai_s2s.media.meters import quantile  # noqa: E402
from openai_s2s.realtime.service import DEFAULT_MODEL  # noqa: E402
from openai_s2s.tools import testswitch as realswitch  # noqa: E402

KEY = "sk-bench-0123456789"
TICK = os.sysconf("SC_CLK_TCK")


BUSY_MODULE = """
import threading, time

def runtime(args):
    count, seconds = (float(x) for x in args.split())
    def spin():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(1000))
    threads = [threading.Thread(target=spin, daemon=True, name="bench-busy") for _ in range(int(count))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


# `python openai_s2s_bench_trim`: hands every malloc arena's free pages back to the OS, so that
# RSS after the calls shows what the switch still holds rather than where its arenas peaked
TRIM_MODULE = """
import ctypes, gc


def fsapi(session, stream, env, args):
    gc.collect()
    stream.write("+OK trimmed %d" % ctypes.CDLL(None).malloc_trim(0))
"""


# `python openai_s2s_bench_threads`: the Python threads' names by OS thread id, for the threads
# FreeSWITCH leaves named "freeswitch" (a Python thread the module does not name itself, a
# session thread running Python)
THREADS_MODULE = """
import json, threading


def fsapi(session, stream, env, args):
    stream.write(json.dumps({str(t.native_id): t.name for t in threading.enumerate() if t.native_id}))
"""


def talk_wav(path: Path, rate: int = 8000) -> None:
    """2 s of a voiced, syllable-modulated signal, then 3 s of silence (5 s, looped by the caller)."""
    t = np.arange(int(2.0 * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    # harmonics up to 3.5 kHz (telephone band) and a little breath noise, so the resamplers'
    # transition bands are exercised as real speech would
    voiced = sum(np.sin(k * phase) / k for k in range(1, 23))
    voiced = voiced / np.max(np.abs(voiced)) + 0.03 * np.random.default_rng(7).standard_normal(len(t))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    talk = (voiced * syllables / np.max(np.abs(voiced)) * 9000).astype("<i2")
    pcm = np.concatenate([talk, np.zeros(int(3.0 * rate), "<i2")])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> float:
    """CPU seconds every core has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def module_threads_cpu(pid: int) -> float:
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("s2s-"):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError):
            continue   # the thread ended between listing and reading
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


PATH = f"/v1/realtime?model={DEFAULT_MODEL}"


def session_update(fmt: str, generation: str = "ga") -> str:
    """No spaces: the original module splits client.event on them."""
    if generation == "beta":
        name = {"pcm": "pcm16", "pcmu": "g711_ulaw"}[fmt]
        return json.dumps({"type": "session.update", "session": {
            "input_audio_format": name, "output_audio_format": name,
            "turn_detection": {"type": "server_vad"}}}, separators=(",", ":"))
    wire = {"type": "audio/pcm", "rate": 24000} if fmt == "pcm" else {"type": f"audio/{fmt}"}
    return json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": wire, "turn_detection": {"type": "server_vad"}}, "output": {"format": wire}}}},
        separators=(",", ":"))


SHAPES = ("parked", "agent", "bridged")
FRAME_MS = 20   # the loopback channels' ptime


def shape_extensions(server_url: str, fmt: str, media: str = "auto") -> str:
    """The dialplan for every shape (besides the harness's park and park_unicast):
    park_esl: answer and park, nothing else (the ESL pattern; media=auto takes unicast);
    agent: the dialplan application on its own channel, pointed at the local server, its
    connection named by the channel's uuid; bridged: answer, then a bridge to a parked loopback
    leg (that leg writes silence, which the bridge carries), the session on the bridging leg."""
    media_var = "" if media == "auto" else \
        f'\n        <action application="set" data="openai_s2s_media={media}"/>'
    agent_path = call_path("${uuid}").lstrip("/").replace("&", "&amp;")
    return realswitch.PARK_EXTENSIONS + f"""
      <extension name="park_esl"><condition field="destination_number" expression="^park_esl$">
        <action application="answer"/>
        <action application="park"/>
      </condition></extension>
      <extension name="agent"><condition field="destination_number" expression="^agent$">
        <action application="set" data="openai_s2s_host={server_url}"/>
        <action application="set" data="openai_s2s_path={agent_path}"/>
        <action application="set" data="openai_s2s_audio_format={fmt}"/>
        <action application="set" data="openai_s2s_greeting=Say hello."/>{media_var}
        <action application="python" data="openai_s2s"/>
        <action application="hangup"/>
      </condition></extension>
      <extension name="bridged"><condition field="destination_number" expression="^bridged$">
        <action application="set" data="loopback_bowout=false"/>
        <action application="answer"/>
        <action application="bridge" data="{{loopback_bowout=false}}loopback/park/default"/>
      </condition></extension>"""


def shape_extension(shape: str, media: str = "auto") -> str:
    """The extension a call of ``shape`` is originated to."""
    if shape == "parked":
        return {"auto": "park_esl", "bug": "park", "unicast": "park_unicast"}[media]
    if shape in ("agent", "bridged"):
        return shape
    raise ValueError(f"unknown shape {shape!r}")


def call_path(uuid: str) -> str:
    """The websocket path of one call's session: the call's uuid in the query names its
    connection in the local server's stats."""
    return f"{PATH}&bench_call={uuid}"


def call_of(path: str) -> Optional[str]:
    """The call a connection's path names (see :func:`call_path`), or None."""
    return (parse_qs(urlsplit(path).query).get("bench_call") or [None])[0]


def wire_frame_bytes(fmt: str, frame_ms: int = FRAME_MS) -> int:
    """Bytes of one frame of caller audio in the wire format: 24 kHz 16-bit pcm, or 8 kHz G.711."""
    return 24000 * frame_ms // 1000 * 2 if fmt == "pcm" else 8000 * frame_ms // 1000


def server_stats(port: int, tls: bool = False) -> Dict[str, Any]:
    """The local server's counters (GET /localserver/stats on its own port)."""
    import ssl
    import urllib.request
    context = ssl._create_unverified_context() if tls else None   # the run's own certificate
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/localserver/stats"
    with urllib.request.urlopen(url, timeout=20, context=context) as reply:
        return json.loads(reply.read())


def received_by_call(stats: Dict[str, Any]) -> Dict[str, Dict[str, int]]:
    """Appends and audio bytes the server got, by the call its connection's path names (a call
    with more than one connection has them summed)."""
    out: Dict[str, Dict[str, int]] = {}
    for row in stats.get("connections", []):
        call = call_of(row.get("path", ""))
        if call is None:
            continue
        got = out.setdefault(call, {"appends": 0, "audio_bytes": 0, "events_sent": 0})
        got["appends"] += row["appends"]
        got["audio_bytes"] += row["audio_bytes"]
        got["events_sent"] += row.get("events_sent", 0)
    return out


def delivery(counters: Dict[str, int], received: Optional[Dict[str, int]], frame_bytes: int,
             chunk_ms: int = FRAME_MS) -> Dict[str, Any]:
    """One call's caller audio: captured (the module's ``status``: frames taken for the uplink,
    ``frames_in``, plus those refused because its queue was full, times the wire bytes of a
    frame) against delivered (the audio bytes the server decoded from the call's appends).
    ``held`` is what may still wait in the uplink's unfinished chunk (less than a chunk);
    ``lost`` is what is missing beyond that, and beyond the frames the module says it dropped;
    of it, ``unread`` is what the module wrote to the socket (``bytes_up``) and the server had
    not read when counted (the server's backlog, not the module's)."""
    dropped_late = counters.get("frames_dropped_late", 0)
    refused = counters.get("frames_dropped", 0) - dropped_late
    captured = (counters.get("frames_in", 0) + refused) * frame_bytes
    delivered = (received or {}).get("audio_bytes", 0)
    chunk_frames = max(1, chunk_ms // FRAME_MS)
    held = (chunk_frames - 1) * frame_bytes
    missing = captured - delivered
    return {"captured": captured, "delivered": delivered,
            "ratio": round(delivered / captured, 5) if captured else None,
            "appends_sent": counters.get("appends", 0), "appends_received": (received or {}).get("appends", 0),
            "bytes_up": counters.get("bytes_up", 0), "dropped_frames": refused + dropped_late,
            "lost": max(0, missing - held - (refused + dropped_late) * frame_bytes),
            "unread": max(0, counters.get("bytes_up", 0) - delivered)}


def delivery_total(calls: List[Dict[str, Any]]) -> Dict[str, Any]:
    captured = sum(c["captured"] for c in calls)
    delivered = sum(c["delivered"] for c in calls)
    return {"captured": captured, "delivered": delivered,
            "ratio": round(delivered / captured, 5) if captured else None,
            "calls_short": sum(1 for c in calls if c["lost"] > 0),
            "lost": sum(c["lost"] for c in calls), "unread": sum(c.get("unread", 0) for c in calls),
            "dropped_frames": sum(c["dropped_frames"] for c in calls),
            "worst_ratio": min((c["ratio"] for c in calls if c["ratio"] is not None), default=None)}


# a uuid's first 8 hex digits (the module's per-call threads), or another hex or decimal counter
_THREAD_SUFFIX = re.compile(r"-(?:[0-9a-f]{8}|(?=[0-9a-f]*[0-9])[0-9a-f]{4,})$")


def thread_group(comm: str) -> str:
    """A thread's name without what differs per call: s2s-rx-1a2b3c4d -> s2s-rx-*."""
    comm = comm.strip()
    grouped = _THREAD_SUFFIX.sub("-*", comm)
    return grouped if grouped != comm else re.sub(r"(?<=\D)\d+$", "*", comm)


def thread_cpu(pid: int) -> Dict[int, Tuple[str, float]]:
    """Every thread's name and user + system CPU seconds, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / TICK)
        except (OSError, ValueError, IndexError):
            continue   # the thread ended between listing and reading
    return out


def threads_by_group(before: Dict[int, Tuple[str, float]], after: Dict[int, Tuple[str, float]],
                     window: float, python_names: Optional[Dict[int, str]] = None) -> Dict[str, Dict[str, float]]:
    """CPU in % of one core over the window, the number of threads and the busiest one's CPU, by
    thread group (threads started in the window count from zero; those that ended in it are not
    seen). FreeSWITCH leaves its session threads, which run the media, named "freeswitch"; those
    that Python knows (``python_names``, by thread id) are told apart by their Python name."""
    groups: Dict[str, Dict[str, float]] = {}
    for tid, (comm, cpu) in after.items():
        used = 100 * (cpu - before[tid][1] if tid in before else cpu) / window
        name = thread_group(comm)
        if comm == "freeswitch" and (python_names or {}).get(tid):
            name = "freeswitch/py:" + thread_group(python_names[tid])
        group = groups.setdefault(name, {"cpu_pct": 0.0, "threads": 0, "max_pct": 0.0})
        group["cpu_pct"] += used
        group["threads"] += 1
        group["max_pct"] = max(group["max_pct"], used)
    return {name: {"cpu_pct": round(g["cpu_pct"], 1), "threads": g["threads"], "max_pct": round(g["max_pct"], 1)}
            for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["cpu_pct"])}


def established_to(port: int) -> int:
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


def status_of(esl: realswitch.Esl, uuid: str) -> Optional[dict]:
    reply = esl.api(f"uuid_openai_s2s {uuid} status")
    return json.loads(reply[4:]) if reply.startswith("+OK") else None


def pct(values: List[Optional[float]], q: float) -> Optional[float]:
    """The q-quantile of the calls' figures that exist, as status reports one call's."""
    found = quantile([v for v in values if v is not None], q)
    return None if found is None else round(found, 2)


def wait_for(predicate, timeout: float, pause: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(pause)
    return bool(predicate())


def place_calls(esl: realswitch.Esl, n: int, talk: Path, shape: str, media: str) -> List[Tuple[str, str]]:
    """N calls of the shape: (the caller's leg, the leg the session runs on)."""
    calls = []
    extension = shape_extension(shape, media)
    for i in range(n):
        a = f"bench-{n}-{i}-a"
        reply = esl.api(f"originate {{origination_uuid={a},loopback_bowout=false}}loopback/{extension}/default "
                        f"&endless_playback({talk})")
        if not reply.startswith("+OK"):
            raise RuntimeError(f"originate: {reply}")
        b = esl.api(f"uuid_getvar {a} other_loopback_leg_uuid")
        calls.append((a, b))
    if shape == "bridged":   # the session goes on a leg that is in its bridge
        for _, b in calls:
            wait_for(lambda: esl.api(f"uuid_getvar {b} bridge_uuid") not in ("", "_undef_"), 10, 0.05)
    return calls


def run_n(fs: realswitch.RealSwitch, esl: realswitch.Esl, server_url: str, n: int, seconds: float, fmt: str,
          talk: Path, warmup: float, server_pid: int, impl: str = "python", generation: str = "ga",
          busy_threads: int = 0, media: str = "auto", shape: str = "parked", chunk_ms: int = FRAME_MS) -> Dict:
    """impl: "python" (this module), "original" (the C module) or "none" (the same calls with
    no session: the harness's own cost, to subtract)."""
    pid = fs.pid
    rss_before = rss_mb(pid)
    calls = place_calls(esl, n, talk, shape, media)
    failed = 0
    port = int(server_url.rsplit(":", 1)[1])
    tls = server_url.startswith("wss")
    python = impl == "python"
    creates = impl != "none" and shape != "agent"   # the agent opens its own session
    for a, b in calls:
        if not creates:
            continue
        if python and generation == "beta":
            esl.api(f"uuid_setvar {b} openai_s2s_protocol beta")
        reply = esl.api(f"uuid_openai_s2s {b} session.create {server_url} {call_path(b)} bearer {KEY}")
        failed += not reply.startswith("+OK")
        if os.environ.get("BENCH_DEBUG"):
            print("create", b, reply, file=sys.stderr)
    pending = [b for _, b in calls] if python else []

    def connected() -> bool:
        pending[:] = [b for b in pending if (status_of(esl, b) or {}).get("state") != "connected"]
        return not pending
    wait_for(connected, 30)
    if impl == "original":
        wait_for(lambda: established_to(port) >= n, 20)
    for _, b in calls:
        if creates:
            esl.api(f"uuid_openai_s2s {b} client.event {session_update(fmt, generation)}")
    time.sleep(warmup)
    before = {b: status_of(esl, b) for _, b in calls} if python else {}
    gc0 = json.loads(esl.api("uuid_openai_s2s status")[4:]).get("python_gc") if python else None
    connected_ws = established_to(port)
    if busy_threads:   # other Python in the switch, CPU-bound, for the whole window (pyrun)
        esl.api(f"pyrun openai_s2s_bench_busy {busy_threads} {seconds + 1}")
    threads0 = thread_cpu(pid)
    all0 = machine_cpu()
    cpu0, mod0, srv0, t0 = proc_cpu(pid), module_threads_cpu(pid), proc_cpu(server_pid), time.monotonic()
    rss_peak = rss_mb(pid)
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss_peak = max(rss_peak, rss_mb(pid))
    cpu1, mod1, srv1, t1 = proc_cpu(pid), module_threads_cpu(pid), proc_cpu(server_pid), time.monotonic()
    all1 = machine_cpu()
    threads1 = thread_cpu(pid)
    after = {b: status_of(esl, b) for _, b in calls} if python else {}
    # after the sessions' figures are read: running a script in the switch's Python may hold
    # the media path up (the gap figures cover each session's whole life)
    python_names = {}
    if "mod_python3" in fs.modules:
        listing = esl.api("python openai_s2s_bench_threads")
        try:
            python_names = {int(k): v for k, v in json.loads(listing).items()}
        except ValueError:
            pass
    gc1 = json.loads(esl.api("uuid_openai_s2s status")[4:]).get("python_gc") if python else None
    # Delivery: pause every session (no more caller audio is taken), let the uplink send what
    # it holds, then compare the module's counters with what the server decoded.
    # A server behind on its reads (a starved process) catches up meanwhile: wait until it has
    # every append the module sent, or until it makes no progress for 10 s (at most 120 s).
    final: Dict[str, Optional[dict]] = {}
    received: Dict[str, Dict[str, int]] = {}
    catch_up_s = None
    if python:
        for _, b in calls:
            esl.api(f"uuid_openai_s2s {b} pause")
        paused = time.monotonic()
        time.sleep(2)
        final = {b: status_of(esl, b) for _, b in calls}
        # An uplink still behind holds frames it will send, or drop for age, after this count:
        # count once every queue is empty (a count taken earlier calls those frames lost).
        while time.monotonic() - paused < 60 and any(
                ((s or {}).get("counters", {}).get("uplink_queued") or (s or {}).get("counters", {}).get(
                    "uplink_waiting_for_room")) for s in final.values()):
            time.sleep(1)
            final = {b: status_of(esl, b) for _, b in calls}
        sent = {b: (s or {}).get("counters", {}).get("appends", 0) for b, s in final.items()}
        progress, last = paused, -1
        while True:
            try:
                received = received_by_call(server_stats(port, tls))
            except OSError as exc:   # a starved server can take longer than the timeout to answer
                print(f"local server's stats: {exc!r}", file=sys.stderr)
            now = time.monotonic()
            if all(received.get(b, {}).get("appends", 0) >= sent[b] for b in sent):
                catch_up_s = round(now - paused, 1)
                break
            got = sum(r["appends"] for r in received.values())
            if got != last:
                progress, last = now, got
            if now - progress > 10 or now - paused > 120:
                break
            time.sleep(1)
    elif impl != "none":
        received = received_by_call(server_stats(port, tls))
    if os.environ.get("BENCH_DEBUG"):
        print("after", after, esl.api(f"uuid_openai_s2s {calls[0][1]} status"), file=sys.stderr)
    for a, b in calls:
        if impl != "none":
            # the original can crash the switch when a call hangs up under a live session
            # (its connection object is freed while its service thread still uses it)
            esl.api(f"uuid_openai_s2s {b} session.delete")
        esl.api(f"uuid_kill {a}")

    def gone() -> bool:
        listing = json.loads(esl.api("uuid_openai_s2s status")[4:]) if python else {}
        return not listing.get("sessions") and not listing.get("threads") \
            and "0 total" in esl.api("show calls count")
    wait_for(gone, 30, 0.5)
    time.sleep(2)
    rss_after = rss_mb(pid)
    trimmed = esl.api("python openai_s2s_bench_trim") if "mod_python3" in fs.modules else ""
    rss_after_trim = rss_mb(pid) if trimmed.startswith("+OK") else None

    live = [s for s in after.values() if s]
    callback_s = sum((after.get(b) or {}).get("media", {}).get("callback_ms", 0) -
                     (before.get(b) or {}).get("media", {}).get("callback_ms", 0) for _, b in calls) / 1000
    window = t1 - t0
    switch_cpu = cpu1 - cpu0
    media_stats = [s["media"] for s in live]
    lat = [s["latency_ms"] for s in live]
    counters = [s["counters"] for s in live]
    frame_bytes = wire_frame_bytes(fmt)
    per_call = {b: delivery((final.get(b) or {}).get("counters", {}), received.get(b), frame_bytes, chunk_ms)
                for _, b in calls} if python else {}
    paths: Dict[str, int] = {}
    for m in media_stats:
        path = m.get("path") or m.get("media") or "?"
        paths[path] = paths.get(path, 0) + 1
    common = {
        "calls": n, "impl": impl, "generation": generation, "shape": shape, "chunk_ms": chunk_ms,
        "connected": len([s for s in live if s["state"] == "connected"]) if python else connected_ws,
        "create_failed": failed,
        "window_s": round(window, 1),
        "switch_cpu_pct": round(100 * switch_cpu / window, 1),
        "cpu_pct_per_call": round(100 * switch_cpu / window / n, 2),
        "local_server_cpu_pct": round(100 * (srv1 - srv0) / window, 1),
        # everything else on the machine in the window (other processes' load), % of one core
        "other_cpu_pct": round(100 * ((all1 - all0) - switch_cpu - (srv1 - srv0)) / window, 1),
        "server_appends": sum(r["appends"] for r in received.values()),
        "server_audio_bytes": sum(r["audio_bytes"] for r in received.values()),
        # every event the server sent the calls, over their whole life (not only the window)
        "server_events_sent": sum(r["events_sent"] for r in received.values()),
        "switch_threads": threads_by_group(threads0, threads1, window, python_names),
        "rss_before_mb": round(rss_before, 1), "rss_peak_mb": round(rss_peak, 1),
        "rss_per_call_mb": round((rss_peak - rss_before) / n, 2), "rss_after_mb": round(rss_after, 1),
        "rss_after_trim_mb": round(rss_after_trim, 1) if rss_after_trim is not None else None,
    }
    if not python:
        return common
    total = delivery_total(list(per_call.values()))
    return {
        **common,
        "media_path": paths,
        "module_share_pct": round(100 * ((mod1 - mod0) + callback_s) / switch_cpu, 1) if switch_cpu else None,
        "module_threads_cpu_pct_per_call": round(100 * (mod1 - mod0) / window / n, 2),
        "media_callbacks_cpu_pct_per_call": round(100 * callback_s / window / n, 2),
        "gap_p50_ms": pct([m.get("write_gap_p50_ms") for m in media_stats], 0.5),
        "gap_p99_ms_worst_call": pct([m.get("write_gap_p99_ms") for m in media_stats], 1.0),
        "gap_max_ms": pct([m.get("write_gap_max_ms") for m in media_stats], 1.0),
        # the same, and the late frames, by the start of the window: a stall before it or in it
        "gap_max_ms_before_window": pct([(s or {}).get("media", {}).get("write_gap_max_ms")
                                         for s in before.values()], 1.0),
        "frames_late_before_window": sum((s or {}).get("media", {}).get("write_gaps_over_40ms", 0)
                                         for s in before.values()),
        "frames_late_20ms": sum(m.get("write_gaps_over_40ms", 0) for m in media_stats),
        "uplink_p50_ms": pct([x["uplink"]["p50"] for x in lat], 0.5),
        "uplink_p99_ms_worst_call": pct([x["uplink"]["p99"] for x in lat], 1.0),
        "uplink_p99_ms_median_call": pct([x["uplink"]["p99"] for x in lat], 0.5),
        "downlink_idle_p50_ms": pct([x["downlink_idle"]["p50"] for x in lat], 0.5),
        "downlink_idle_p99_ms_median_call": pct([x["downlink_idle"]["p99"] for x in lat], 0.5),
        "downlink_idle_p99_ms_worst_call": pct([x["downlink_idle"]["p99"] for x in lat], 1.0),
        "barge_ins": sum(c["barge_ins"] for c in counters),
        "frames_after_barge_in_max": max([c["frames_after_barge_in"] for c in counters], default=None),
        "underruns": sum(c["underruns"] for c in counters),
        # of those, the ones with the server's next bytes already on this machine (ours)
        "underruns_receiver_behind": sum(c.get("underruns_receiver_behind", 0) for c in counters),
        "frames_out": sum(c["frames_out"] for c in counters),
        # caller audio: what the module captured against what the server decoded (exact)
        "delivered_ratio": total["ratio"], "delivered_worst_call": total["worst_ratio"],
        # seconds from the pause until the server had every append sent (None: it never did)
        "server_caught_up_s": catch_up_s,
        "captured_bytes": total["captured"], "delivered_bytes": total["delivered"],
        "calls_short": total["calls_short"], "lost_bytes": total["lost"], "unread_bytes": total["unread"],
        "frames_dropped": total["dropped_frames"],
        "delivery_per_call": per_call,
        # at the end of the window: calls whose socket was full (the server not reading), and
        # the largest backlog of frames queued for the uplink
        "uplink_waiting_for_room": sum(bool(c.get("uplink_waiting_for_room")) for c in counters),
        "uplink_queued_max": max([c.get("uplink_queued", 0) for c in counters], default=None),
        # Python's collector stops every thread of the interpreter: collections per generation
        # in the window, and the longest pause of each since the switch started
        "gc_collections_in_window": [b - a for a, b in zip(gc0["collections"], gc1["collections"])]
        if gc0 and gc1 else None,
        "gc_max_ms": gc1["max_ms"] if gc1 else None,
    }


SPEEX_ROUND_TRIP = r"""
#include <speex/speex_resampler.h>
#include <stdio.h>
#include <stdlib.h>
/* stdin: int16 at 8 kHz; stdout: the same after 8k -> 24k -> 8k, quality argv[1] */
int main(int argc, char **argv) {
    static spx_int16_t in[1 << 20], up[3 << 20], out[1 << 20];
    int q = atoi(argv[1]);
    spx_uint32_t n = fread(in, 2, 1 << 20, stdin), nu = 3 << 20, no = 1 << 20;
    SpeexResamplerState *a = speex_resampler_init(1, 8000, 24000, q, NULL);
    SpeexResamplerState *b = speex_resampler_init(1, 24000, 8000, q, NULL);
    speex_resampler_process_int(a, 0, in, &n, up, &nu);
    speex_resampler_process_int(b, 0, up, &nu, out, &no);
    fwrite(out, 2, no, stdout);
    return 0;
}
"""


def _snr(x: np.ndarray, y: np.ndarray, band: bool = False) -> float:
    """SNR of y against x after aligning y by its best lag (every resampler delays)."""
    m = min(len(x), len(y))
    lags = range(0, 200)
    lag = max(lags, key=lambda k: float(np.dot(x[: m - 400], y[k: k + m - 400])))
    ref, got = x[400: m - 400], y[400 + lag: m - 400 + lag]
    if band:
        # the telephone band only (300-3400 Hz): what a caller can hear through G.711
        keep = (np.fft.rfftfreq(len(ref), 1 / 8000) >= 300) & (np.fft.rfftfreq(len(ref), 1 / 8000) <= 3400)
        ref, got = (np.fft.irfft(np.fft.rfft(v) * keep, len(v)) for v in (ref, got))
    return round(float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))), 1)


def resampling_quality() -> Dict:
    """8 kHz -> 24 kHz -> 8 kHz round trip of the speech-like talk, SNR in dB: libsamplerate's
    converters and ours (the FIR, the default) against speex at SWITCH_RESAMPLE_QUALITY (2), as the
    original module resamples, when libspeexdsp's headers are here."""
    import samplerate
    with tempfile.TemporaryDirectory() as d:
        talk_wav(Path(d) / "t.wav")
        with wave.open(str(Path(d) / "t.wav")) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")[:16000]
        x = pcm.astype(np.float64) / 32768
        out = {}
        for converter in ("sinc_fastest", "sinc_medium", "sinc_best"):
            up = samplerate.resample(x.astype(np.float32), 3.0, converter)
            back = samplerate.resample(up, 1 / 3.0, converter).astype(np.float64)
            out[converter] = {"full": _snr(x, back), "300-3400Hz": _snr(x, back, band=True)}
        from openai_s2s.media.resample import Resampler
        up, down = Resampler(8000, 24000, "fir"), Resampler(24000, 8000, "fir")
        back = b"".join(down.process(up.process(pcm[i:i + 160].tobytes())) for i in range(0, len(pcm), 160))
        y = np.frombuffer(back, "<i2").astype(np.float64) / 32768
        out["fir (default)"] = {"full": _snr(x, y), "300-3400Hz": _snr(x, y, band=True)}
        source = Path(d) / "speex.c"
        source.write_text(SPEEX_ROUND_TRIP)
        build = subprocess.run(["gcc", "-O2", "-o", str(Path(d) / "speex"), str(source), "-lspeexdsp"],
                               capture_output=True)
        if build.returncode == 0:
            for quality in (2, 5):
                back = subprocess.run([str(Path(d) / "speex"), str(quality)], input=pcm.tobytes(),
                                      capture_output=True).stdout
                y = np.frombuffer(back, "<i2").astype(np.float64) / 32768
                out[f"speex_q{quality}"] = {"full": _snr(x, y), "300-3400Hz": _snr(x, y, band=True)}
    return out


COLUMNS = ["calls", "shape", "chunk_ms", "media_path", "connected", "switch_cpu_pct", "local_server_cpu_pct",
           "other_cpu_pct",
           "cpu_pct_per_call", "cpu_pct_per_call_over_baseline",
           "module_share_pct", "module_threads_cpu_pct_per_call", "media_callbacks_cpu_pct_per_call",
           "gap_p50_ms", "gap_p99_ms_worst_call",
           "gap_max_ms", "frames_late_20ms", "uplink_p50_ms", "uplink_p99_ms_worst_call", "uplink_p99_ms_median_call", "downlink_idle_p50_ms",
           "downlink_idle_p99_ms_median_call", "downlink_idle_p99_ms_worst_call", "frames_after_barge_in_max", "underruns",
           "underruns_receiver_behind", "delivered_ratio", "delivered_worst_call", "server_caught_up_s", "calls_short", "lost_bytes", "unread_bytes",
           "frames_dropped", "captured_bytes", "delivered_bytes",
           "uplink_waiting_for_room", "uplink_queued_max", "rss_per_call_mb",
           "rss_before_mb", "rss_after_mb", "rss_after_trim_mb"]


def print_delivery(row: Dict) -> None:
    """Caller audio delivered / captured, per call and in total (bytes in the wire format)."""
    per_call = row.get("delivery_per_call")
    if not per_call:
        if "server_audio_bytes" in row and row["impl"] != "none":
            print(f"delivered (server's count, {row['calls']} calls): {row['server_audio_bytes']} bytes, "
                  f"{row['server_appends']} appends; captured: not known for impl {row['impl']}")
        return
    print(f"caller audio delivered / captured, {row['calls']} calls ({row['shape']}):")
    for call, d in per_call.items():
        print(f"  {call}  {d['delivered']}/{d['captured']}  ({d['ratio']})  appends {d['appends_received']}/"
              f"{d['appends_sent']}  dropped {d['dropped_frames']}  lost {d['lost']} (unread {d.get('unread', 0)})")
    print(f"  total  {row['delivered_bytes']}/{row['captured_bytes']}  ({row['delivered_ratio']}), worst call "
          f"{row['delivered_worst_call']}, calls short {row['calls_short']}, frames dropped {row['frames_dropped']}, "
          f"lost {row['lost_bytes']} (of it written to the socket and not read by the server: {row['unread_bytes']}), "
          f"server caught up after {row.get('server_caught_up_s')} s")


def print_threads(row: Dict, top: int = 12) -> None:
    groups = list(row.get("switch_threads", {}).items())[:top]
    print(f"switch CPU by thread, {row['calls']} calls ({row['shape']}), % of one core: " +
          ", ".join(f"{name} x{g['threads']} {g['cpu_pct']} (busiest {g['max_pct']})" for name, g in groups))


def print_table(rows: List[Dict], compare: Optional[List[Dict]] = None) -> None:
    old = {r["calls"]: r for r in compare or []}
    for col in COLUMNS:
        if all(col not in r for r in rows):
            continue
        cells = []
        for r in rows:
            cell = f"{r.get(col)}"
            prev = old.get(r["calls"], {}).get(col)
            if compare is not None and isinstance(prev, (int, float)) and isinstance(r.get(col), (int, float)):
                cell += f" ({r[col] - prev:+.2f})"
            cells.append(cell)
        print(f"{col:34}" + "".join(f"{c:>20}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,25,50,100")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--format", choices=("pcm", "pcmu"), default="pcm",
                        help="wire format: pcm (24 kHz, resampled) or pcmu (8 kHz, no resampling)")
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval inside the switch (default: the module's 0.0005)")
    parser.add_argument("--impl", choices=("python", "original", "none"), default="python",
                        help="this module; the original C module (mod_openai_s2s.so, built and installed "
                             "by you in the switch's module dir; beta only); or no session at all, to "
                             "measure the calls' own cost")
    parser.add_argument("--generation", choices=("ga", "beta"), default="ga")
    parser.add_argument("--shape", choices=SHAPES, default="parked",
                        help="parked: a parked call, session.create over ESL (the ESL pattern); agent: "
                             "the dialplan application on its own channel; bridged: the session on a leg "
                             "of a bridged call (the media bug)")
    parser.add_argument("--media", choices=("auto", "bug", "unicast"), default="auto",
                        help="the module's media option (default auto, the module's own: unicast for a "
                             "parked channel without send_silence_when_idle); with --shape parked, bug "
                             "parks the call with send_silence_when_idle, as the media bug needs")
    parser.add_argument("--chunk-ms", type=int, default=Settings().values["chunk_ms"],
                        help="the module's chunk-ms: ms of caller audio per input_audio_buffer.append "
                             "(default: the module's)")
    parser.add_argument("--switch-env", action="append", default=[], metavar="NAME=VALUE",
                        help="more environment for the switch (e.g. PYTHONMALLOC=malloc); repeatable")
    parser.add_argument("--switch-arg", action="append", default=[], metavar="OPTION",
                        help="one more freeswitch option, e.g. -np (no realtime scheduling)")
    parser.add_argument("--busy-threads", type=int, default=0,
                        help="CPU-busy Python threads in the switch during the window (other scripts)")
    parser.add_argument("--tls", action="store_true",
                        help="wss:// to the local server, with a certificate made for the run (openssl)")
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--compare")
    parser.add_argument("--baseline", help="a --impl none run: adds each row's CPU per call above it")
    args = parser.parse_args()
    reason = realswitch.missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    modules = None
    if args.impl == "original":
        if args.generation != "beta":
            parser.error("the original module speaks only the beta protocol: add --generation beta")
        if not (realswitch.mod_dir(realswitch.find_prefix()) / "mod_openai_s2s.so").exists():
            print("cannot run: no mod_openai_s2s.so in the switch's module directory", file=sys.stderr)
            return 2
        modules = [m for m in realswitch.MODULES if m != "mod_python3"] + ["mod_openai_s2s"]
    if (args.impl == "original" and args.shape != "parked") or (args.impl == "none" and args.shape == "agent"):
        parser.error(f"--shape {args.shape} with --impl {args.impl}: the original runs parked only, "
                     "and the agent is the module")
    if args.shape == "bridged" and args.media == "unicast":
        parser.error("unicast needs a parked channel: a bridged call takes the media bug")
    if args.shape == "agent" and args.generation == "beta":
        parser.error("the bench's agent runs GA (the agent's protocol follows its path)")
    workdir = Path(tempfile.mkdtemp(prefix="openai_s2s-bench-"))
    talk = workdir / "talk.wav"
    talk_wav(talk)
    port = realswitch.free_port()
    tls_args, scheme, cert = [], "ws", None
    if args.tls:
        cert, key = workdir / "cert.pem", workdir / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        tls_args, scheme = ["--tls-cert", str(cert), "--tls-key", str(key)], "wss"
    server = subprocess.Popen([sys.executable, "-m", "openai_s2s.localserver", "--port", str(port),
                               "--api-key", KEY, "--reply", "echo", "--generation", args.generation,
                               "--no-record", *tls_args],
                              cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:   # the server imports numpy first: wait for its port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    url = f"{scheme}://127.0.0.1:{port}"
    dialplan = shape_extensions(url, args.format, args.media)
    env = {"OPENAI_S2S_SWITCH_INTERVAL": str(args.switch_interval)} if args.switch_interval else {}
    env["OPENAI_API_KEY"] = KEY   # the agent's key: from the environment, as a deployment's would be
    env.update(item.split("=", 1) for item in args.switch_env)
    fs = realswitch.RealSwitch(workdir / "fs", dialplan, env=env, modules=modules, args=args.switch_arg)
    rows = []
    try:
        fs.write_conf()
        if cert:
            fs.set_module_params(tls_ca_file=str(cert))   # TLS options are the config file's alone
        fs.set_module_params(chunk_ms=str(args.chunk_ms))
        (fs.workdir / "scripts" / "openai_s2s_bench_busy.py").write_text(BUSY_MODULE)
        (fs.workdir / "scripts" / "openai_s2s_bench_trim.py").write_text(TRIM_MODULE)
        (fs.workdir / "scripts" / "openai_s2s_bench_threads.py").write_text(THREADS_MODULE)
        fs.start(write_conf=False)
        deadline = time.monotonic() + 30
        while "uuid_openai_s2s" not in fs.cli("show api uuid_openai_s2s") and time.monotonic() < deadline:
            time.sleep(0.2)
        esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
        esl.api("log 4")   # keep the switch's own logging out of the measurement
        for n in [int(c) for c in args.calls.split(",")]:
            row = run_n(fs, esl, url, n, args.seconds, args.format, talk, args.warmup, server.pid,
                        args.impl, args.generation, args.busy_threads, args.media, args.shape, args.chunk_ms)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "delivery_per_call"}), flush=True)
            print_delivery(row)
            print_threads(row)
    finally:
        fs.stop()
        server.terminate()
        server.wait(10)
    if args.baseline:
        base = {r["calls"]: r for r in json.loads(Path(args.baseline).read_text())["rows"]}
        for row in rows:
            if row["calls"] in base:
                row["cpu_pct_per_call_over_baseline"] = round(
                    row["cpu_pct_per_call"] - base[row["calls"]]["cpu_pct_per_call"], 2)
    result = {"impl": args.impl, "shape": args.shape, "media": args.media, "chunk_ms": args.chunk_ms,
              "generation": args.generation, "format": args.format, "seconds": args.seconds,
              "cpus": os.cpu_count(), "rows": rows,
              "resampling_snr_db": resampling_quality()}
    Path(args.out).write_text(json.dumps(result, indent=1))
    compare = json.loads(Path(args.compare).read_text())["rows"] if args.compare else None
    print_table(rows, compare)
    print("resampling 8k->24k->8k SNR (dB):", result["resampling_snr_db"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
