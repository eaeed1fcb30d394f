"""When a read asks a second copy: once the first has taken longer than nearly all
recent reads of about its size (a percentile of a sliding window), within fixed
bounds.

Owns the latency samples and the delay they give; chunkio.py starts the second read
and keeps whichever answers first. Never blocks, never talks to a server.
"""

from __future__ import annotations

from collections import deque

# A read slower than this share of recent ones of its size looks stuck, not busy.
PERCENTILE = 0.95
WINDOW = 128
MIN_SAMPLES = 16
# Never sooner: a hedge costs a second server a read, and under load every read is
# slow, so the floor keeps hedges from doubling the load.
FLOOR_S = 0.02
# Never later: a stopped or hung server costs a read at most this much.
CEILING_S = 1.0
# Before a size class has MIN_SAMPLES reads behind it.
UNMEASURED_S = 0.25
# Reads within a factor of 8 of each other in size share a window.
CLASS_BITS = 3
SMALLEST_CLASS_BITS = 12  # 4 KiB and less: one class


class ReadLatency:
    """Recent read latencies by size class, and the hedge delay they give."""

    def __init__(self) -> None:
        self._windows: dict[int, deque[float]] = {}

    def record(self, length: int, seconds: float) -> None:
        window = self._windows.setdefault(_size_class(length), deque(maxlen=WINDOW))
        window.append(seconds)

    def delay(self, length: int) -> float:
        """How long a read of `length` bytes may take before a second copy is asked."""
        window = self._windows.get(_size_class(length))
        if window is None or len(window) < MIN_SAMPLES:
            return UNMEASURED_S
        ordered = sorted(window)
        slow = ordered[int(PERCENTILE * (len(ordered) - 1))]
        return min(CEILING_S, max(FLOOR_S, slow))


def _size_class(length: int) -> int:
    return max(0, length.bit_length() - SMALLEST_CLASS_BITS) // CLASS_BITS
