"""Media lateness (the time between consecutive frames a call hands the switch), and quantiles.

A frame is due every ptime (20 ms); a gap over 40 ms means a frame came more than 20 ms late
(the targets: no gap over 40 ms). Kept as a 1 ms histogram so the media thread only increments a counter.
"""
from __future__ import annotations

import bisect
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

    def pause(self) -> None:
        """No frames for a while, by design (the next one is not a gap after this one)."""
        self._last = 0.0

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


# Bucket bounds (seconds) for latencies an operator scrapes: 20 ms is a frame, seconds mean
# an uplink or a server far behind.
LATENCY_BOUNDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class LatencyHistogram:
    """Counts per bucket and a sum, written by one thread (a bisect and two additions)."""

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        self.counts: List[int] = [0] * (len(self.bounds) + 1)   # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def add(self, other: "LatencyHistogram") -> None:
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.sum += other.sum


def gap_histogram(meter: GapMeter) -> LatencyHistogram:
    """A GapMeter's 1 ms bins as a LatencyHistogram (its sum from the bins' lower edges)."""
    histogram = LatencyHistogram()
    for ms, count in enumerate(meter.histogram):
        if count:
            seconds = ms / 1000
            histogram.counts[bisect.bisect_left(histogram.bounds, seconds)] += count
            histogram.sum += seconds * count
    return histogram
