"""Pauses of Python's garbage collector, for the operator: while a collection runs, no thread of
the embedded interpreter runs Python, so a long one delays every call's audio at once.

Installed once (this module is never reloaded); ``uuid_openai_s2s status`` shows it.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Dict, List

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


def install() -> None:
    """At the first session: from then on a full collection no longer walks what was loaded
    before it (the standard library, numpy, this package: hundreds of thousands of objects
    that live as long as the switch), only what calls have made since. Measured at 100 calls:
    one full collection took 34 ms, long enough to make every call's frame late."""
    if _on_collect not in gc.callbacks:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(_on_collect)


def stats() -> Dict[str, Any]:
    return {"collections": list(_counts), "max_ms": [round(v, 2) for v in _max_ms],
            "total_ms": [round(v, 1) for v in _total_ms]}
