"""Media lateness (the time between consecutive frames a call hands the switch), and quantiles.

A frame is due every ptime (20 ms); a gap over 40 ms means a frame came more than 20 ms late
(the targets: no gap over 40 ms). Kept as a 1 ms histogram so the media thread only increments a counter.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

LATE_GAP = 0.04


class GapMeter:
    def __init__(self) -> None:
        self.histogram: List[int] = [0] * 101   # 1 ms bins, the last one is 100 ms and more
        self.max = 0.0
        self.late = 0
        self._last = 0.0

    def frame(self, now: float) -> float:
        """Count a frame handed over at ``now``; returns the gap since the last one (0 at first)."""
        gap = now - self._last if self._last else 0.0
        if self._last:
            self.histogram[min(int(gap * 1000), 100)] += 1
            if gap > self.max:
                self.max = gap
            if gap > LATE_GAP:
                self.late += 1
        self._last = now
        return gap

    def stats(self) -> Dict[str, Optional[float]]:
        return {"write_gap_p50_ms": histogram_quantile(self.histogram, 0.5),
                "write_gap_p99_ms": histogram_quantile(self.histogram, 0.99),
                "write_gap_max_ms": round(self.max * 1000, 1),
                "write_gaps_over_40ms": self.late}


def histogram_quantile(histogram: List[int], q: float) -> Optional[int]:
    """The q-quantile, in ms, of a 1 ms-bin histogram (None when empty)."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = q * total, 0
    for ms, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return ms
    return len(histogram) - 1


def quantile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-quantile of ``values`` by rank (the value at index q*n, the largest for q=1)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
