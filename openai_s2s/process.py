"""The module's process-wide side effects, all of them, each with why and how to turn it off.

mod_python3 embeds one interpreter for the whole switch, so each of these reaches every Python
script the switch runs, not only this module:

- **The GIL switch interval** (``sys.setswitchinterval``), set when the module first runs inside
  the switch: 0.5 ms instead of Python's 5 ms. Python callbacks on media threads need the GIL
  often and briefly; with 5 ms a busy Python thread held them off for 80-160 ms (measured in
  the switch with CPU-bound Python beside 25 calls). Off: ``OPENAI_S2S_SWITCH_INTERVAL=0.005``
  (Python's default) in the switch's environment.
- **gc.freeze() at the first session**: everything loaded before it (the standard library,
  numpy, this package) leaves later full collections. Measured at 100 calls: one full collection
  took 34 ms, long enough to make every call's frame late; after the freeze, 5.3 ms. Objects of
  other scripts that exist at that moment are then never collected as cycles. Off:
  ``OPENAI_S2S_GC_FREEZE=0``.
- **A heap trim when the last session ends** (``malloc_trim``), once more 2 s later, when the
  switch has torn the channels down, and a last time 10 s after, when the switch's session
  thread pool has let the calls' threads go (an idle worker ends after 5 s without work): every
  session thread gets a glibc malloc arena of its own, and without a trim the switch keeps their
  high-water mark (measured: +25 MB after 25 calls, about 20 MB handed back by the second trim
  after 100, and 2-5 MB more by the last after 50). Only when idle, because a trim holds each
  arena's lock while it walks it, and media threads allocate from those arenas too. Off:
  ``OPENAI_S2S_HEAP_TRIM=0``.

A malformed value is logged and the default kept: it never breaks the module's import.

One thing the module reads and does not change: the switch's scheduling. Started as root,
FreeSWITCH gives itself SCHED_FIFO (priority 1, or the packaged unit's rr 89), and every
thread it and this module start inherits it. The module's threads do better with it than
without: at 100 parked calls on 2 cores, with the switch started with ``-np`` (SCHED_OTHER),
gap max 133-255 ms, 2,018-2,797 frames late and uplink p99 0.36-0.41 s, against 23-52 ms,
0-71 late and 31-32 ms with it (docs/performance.md); with only the module's threads but
``s2s-media`` moved to SCHED_OTHER, 60-135 ms, 966-1,491 late, 0.15-0.22 s and a fifth more
CPU. So the module leaves its threads as the switch made them and warns when it runs without.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import native
from .log import WARNING, log

DEFAULT_SWITCH_INTERVAL = 0.0005
# Seconds after the last session ended, each trim only if none has started since: the switch
# tears the channels down after their sessions end, and its session thread pool's workers end
# once they have waited 5 s for work (switch_core_session.c), freeing what they held.
TRIM_AGAIN_AFTER: Tuple[float, ...] = (2.0, 10.0)


def _env_float(name: str, default: float, environ: Mapping[str, str]) -> float:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
        if not 0 < value <= 1:
            raise ValueError("must be more than 0 and at most 1 (seconds)")
        return value
    except ValueError as exc:
        log(WARNING, f"openai_s2s: {name}={text!r} ignored ({exc}); using {default}")
        return default


def _env_on(name: str, environ: Mapping[str, str]) -> bool:
    return environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def set_switch_interval(environ: Mapping[str, str] = os.environ) -> float:
    """Set the interpreter's GIL switch interval for life inside the switch; returns it."""
    interval = _env_float("OPENAI_S2S_SWITCH_INTERVAL", DEFAULT_SWITCH_INTERVAL, environ)
    sys.setswitchinterval(interval)
    return interval


_POLICIES = {getattr(os, name): name[6:].lower()
             for name in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")
             if hasattr(os, name)}


def scheduling(pid: int = 0) -> Optional[Dict[str, Any]]:
    """A process's scheduling policy and realtime priority (its main thread's, which the
    switch's threads inherit): {"policy": "fifo", "priority": 1}; None where it cannot be read."""
    try:
        policy = os.sched_getscheduler(pid or os.getpid())
        priority = os.sched_getparam(pid or os.getpid()).sched_priority
    except (OSError, AttributeError):   # gone, not ours to read, or not Linux
        return None
    return {"policy": _POLICIES.get(policy, str(policy)), "priority": priority}


def realtime(sched: Optional[Dict[str, Any]]) -> bool:
    return sched is not None and sched["policy"] in ("fifo", "rr")


def warn_without_realtime() -> None:
    """Log once, at the module's start in the switch, if the switch has no realtime priority."""
    sched = scheduling()
    if sched is not None and not realtime(sched):
        log(WARNING, f"openai_s2s: FreeSWITCH runs without realtime scheduling (SCHED_{sched['policy'].upper()}): "
            "media frames and the uplink fall behind under load; start it as root without -np/-lp, or "
            "give it CAP_SYS_NICE (docs/operations.md)")


# -- the collector: frozen once, and its pauses measured for `status` ----------------------
_started = [0.0]
_counts: List[int] = [0, 0, 0]
_max_ms: List[float] = [0.0, 0.0, 0.0]
_total_ms: List[float] = [0.0, 0.0, 0.0]


def _on_collect(phase: str, info: Dict[str, Any]) -> None:
    # runs inside every collection, on whichever thread triggered it: no allocation-heavy work
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info.get("generation", 2)
    if not 0 <= generation <= 2:
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    _counts[generation] += 1
    _total_ms[generation] += ms
    if ms > _max_ms[generation]:
        _max_ms[generation] = ms


def first_session(environ: Mapping[str, str] = os.environ) -> None:
    """Before the first session starts: freeze what is loaded, and start timing collections."""
    if _on_collect not in gc.callbacks:
        if _env_on("OPENAI_S2S_GC_FREEZE", environ):
            gc.collect()
            gc.freeze()
        gc.callbacks.append(_on_collect)


def gc_stats() -> Dict[str, Any]:
    """Collections, longest and total pause per generation (``status``'s ``python_gc``)."""
    return {"collections": list(_counts), "max_ms": [round(v, 2) for v in _max_ms],
            "total_ms": [round(v, 1) for v in _total_ms]}


# -- the heap, once no session is left -----------------------------------------------------
def _trim_heap() -> None:
    gc.collect()   # sessions end as cycles (a thread's target is the session): free them first
    native.malloc_trim()


def last_session_ended(still_idle: Callable[[], bool],
                       environ: Mapping[str, str] = os.environ) -> Optional[threading.Thread]:
    """Trim now, and again at each of ``TRIM_AGAIN_AFTER`` while ``still_idle()``."""
    if not _env_on("OPENAI_S2S_HEAP_TRIM", environ):
        return None
    trim, schedule = _trim_heap, tuple(TRIM_AGAIN_AFTER)   # as they are now, for the whole schedule
    trim()
    ended = time.monotonic()

    def later() -> None:
        native.name_thread("openai_s2s-trim")
        for after in schedule:
            time.sleep(max(0.0, ended + after - time.monotonic()))
            if not still_idle():
                return   # a session has started: its own end trims
            trim()

    # not "s2s-": status counts those as the sessions' threads, which must be 0 once they end
    thread = threading.Thread(target=later, name="openai_s2s-trim", daemon=True)
    thread.start()
    return thread
