"""What every session has counted, for the metrics: the live sessions' counters read at a
scrape, plus the totals of the sessions that have ended (added once, as each ends), so the
counters an operator scrapes only ever grow. Never reloaded: the totals live here."""
from __future__ import annotations

import re
import threading
from typing import Any, Dict, Iterable, List, Tuple

from ..media.meters import LatencyHistogram, gap_histogram

COUNTERS = ("frames_in", "frames_dropped", "frames_out", "bytes_up", "bytes_down", "underruns",
            "overruns", "barge_ins")
HISTOGRAMS = ("uplink", "downlink", "write_gap")

_lock = threading.Lock()
_ended: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
_ended_histograms: Dict[str, LatencyHistogram] = {name: LatencyHistogram() for name in HISTOGRAMS}
_sessions_ended = 0
_connect_failures: Dict[str, int] = {}


def failure_kind(reason: str) -> str:
    """A connect_failed reason as a label from a small fixed set (reasons carry hosts and text)."""
    text = reason.lower()
    http = re.match(r"http (\d{3})", text)
    if http:
        return f"http_{http.group(1)}"
    for kind, words in (("cancelled", ("session.delete", "hangup", "test teardown", "shutdown")),
                        ("timeout", ("timed out", "timeout")), ("refused", ("refused",)),
                        ("tls", ("certificate", "ssl", "tls")), ("dns", ("name or service", "resolve",
                                                                      "getaddrinfo")),
                        ("redirect", ("redirect",))):
        if any(word in text for word in words):
            return kind
    return "other"


def counters(session: Any) -> Dict[str, int]:
    uplink, playout = session.uplink, session.playout
    return {"frames_in": uplink.frames_in, "frames_dropped": uplink.dropped_total,
            "frames_out": playout.frames_out, "bytes_up": uplink.bytes_up,
            "bytes_down": session.bytes_down, "underruns": playout.underruns,
            "overruns": playout.overruns, "barge_ins": session.proto.barge_ins}


def histograms(session: Any) -> Dict[str, LatencyHistogram]:
    gaps = getattr(session.call, "gaps", None)
    return {"uplink": session.uplink.latency_histogram, "downlink": session.playout.latency_histogram,
            "write_gap": gap_histogram(gaps) if gaps is not None else LatencyHistogram()}


def retire(session: Any, failed_reason: "str | None") -> None:
    """Add an ending session's counts to the totals, once."""
    global _sessions_ended
    with _lock:
        if getattr(session, "tallied", False):
            return
        session.tallied = True   # read under this lock: a scrape never counts it twice
        for name, value in counters(session).items():
            _ended[name] += value
        for name, histogram in histograms(session).items():
            _ended_histograms[name].add(histogram)
        _sessions_ended += 1
        if failed_reason is not None:
            kind = failure_kind(failed_reason)
            _connect_failures[kind] = _connect_failures.get(kind, 0) + 1


def snapshot(live: Iterable[Any]) -> Tuple[Dict[str, int], Dict[str, LatencyHistogram], int,
                                           Dict[str, int], List[Any]]:
    """(counters, histograms, sessions ended, connect failures by kind, live sessions not yet
    in the totals), consistent with each other."""
    with _lock:
        totals = dict(_ended)
        merged = {name: LatencyHistogram() for name in HISTOGRAMS}
        for name, histogram in _ended_histograms.items():
            merged[name].add(histogram)
        current = [s for s in live if not getattr(s, "tallied", False)]
        for session in current:
            for name, value in counters(session).items():
                totals[name] += value
            for name, histogram in histograms(session).items():
                merged[name].add(histogram)
        return totals, merged, _sessions_ended, dict(_connect_failures), current
