"""``uuid_openai_s2s metrics``: the module's counters in Prometheus' text exposition format.

Every label value comes from a fixed set (session states, media paths, directions, kinds of
connect failure), never from what a caller or a server sent, so the output is safe to hand to
a collector as it is.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..call import registry, tally
from ..media.meters import LatencyHistogram

STATES = ("connecting", "connected", "closing", "closed")
MEDIA = ("bug", "unicast")

_COUNTERS: Tuple[Tuple[str, str, str, Dict[str, str]], ...] = (
    ("frames_in", "openai_s2s_caller_frames_total", "Caller frames taken for the uplink.", {}),
    ("frames_dropped", "openai_s2s_caller_frames_dropped_total",
     "Caller frames dropped because the uplink was full.", {}),
    ("frames_out", "openai_s2s_model_frames_total", "Frames of model audio played to callers.", {}),
    ("bytes_up", "openai_s2s_audio_bytes_total", "Audio bytes sent to the server and received from it.",
     {"direction": "up"}),
    ("bytes_down", "openai_s2s_audio_bytes_total", "", {"direction": "down"}),
    ("underruns", "openai_s2s_underruns_total",
     "Frame times with model audio still streaming and none queued.", {}),
    ("overruns", "openai_s2s_playout_overruns_total", "Model audio deltas dropped, the playout buffer full.", {}),
    ("barge_ins", "openai_s2s_barge_ins_total", "Model audio flushed because the caller spoke.", {}),
)
_HISTOGRAMS = (
    ("uplink", "openai_s2s_uplink_latency_seconds", "Caller audio captured to sent on the websocket."),
    ("downlink", "openai_s2s_downlink_latency_seconds", "Model audio received to its first sample played."),
    ("write_gap", "openai_s2s_write_gap_seconds", "Time between consecutive frames handed to the switch."),
)


def _labels(labels: Dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _media(session: Any) -> str:
    stats = session.call.stats() if hasattr(session.call, "stats") else {}
    return stats.get("media") if stats.get("media") in MEDIA else "bug"


def _histogram(lines: List[str], name: str, histogram: LatencyHistogram) -> None:
    running = 0
    for bound, count in zip(histogram.bounds, histogram.counts):
        running += count
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
    running += histogram.counts[-1]
    lines.append(f'{name}_bucket{{le="+Inf"}} {running}')
    lines.append(f"{name}_sum {histogram.sum:.6f}")
    lines.append(f"{name}_count {running}")


def render(sessions: Optional[Iterable[Any]] = None) -> str:
    """The exposition text (ends with a newline) for the live sessions (the registry's unless
    given) and the ended ones."""
    live = registry.all_sessions() if sessions is None else list(sessions)
    totals, histograms, ended, failures, current = tally.snapshot(live)
    lines: List[str] = ["# HELP openai_s2s_sessions Sessions by state and media path.",
                        "# TYPE openai_s2s_sessions gauge"]
    by_key: Dict[Tuple[str, str], int] = {(s, m): 0 for s in STATES for m in MEDIA}
    for session in current:
        key = (session.state if session.state in STATES else "closing", _media(session))
        by_key[key] += 1
    lines += [f'openai_s2s_sessions{{state="{s}",media="{m}"}} {n}' for (s, m), n in by_key.items()]
    lines += ["# HELP openai_s2s_sessions_ended_total Sessions that have ended.",
              "# TYPE openai_s2s_sessions_ended_total counter", f"openai_s2s_sessions_ended_total {ended}"]
    declared = set()
    for key, name, text, labels in _COUNTERS:
        if name not in declared:
            declared.add(name)
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
        lines.append(f"{name}{_labels(labels)} {totals[key]}")
    lines += ["# HELP openai_s2s_connect_failures_total Sessions whose connect failed, by kind.",
              "# TYPE openai_s2s_connect_failures_total counter"]
    lines += [f'openai_s2s_connect_failures_total{{reason="{kind}"}} {n}' for kind, n in sorted(failures.items())]
    for key, name, text in _HISTOGRAMS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        _histogram(lines, name, histograms[key])
    return "\n".join(lines) + "\n"
