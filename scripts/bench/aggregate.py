"""Turning per-round samples into medians, spreads, ratios and per-operation floors.

Pure arithmetic on numbers the run collected; no I/O, no formatting.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LOCAL = "local"
PASSTHROUGH = "passthrough"
DFS = "dfs"
REFERENCES = (PASSTHROUGH, LOCAL)


@dataclass(frozen=True, slots=True)
class Summary:
    """A figure over the rounds: its median and spread = (max - min) / median."""

    median: float
    spread: float
    samples: tuple[float, ...]


def summarize(samples: Sequence[float]) -> Summary | None:
    if not samples:
        return None
    median = statistics.median(samples)
    spread = (max(samples) - min(samples)) / median if median > 0 else 0.0
    return Summary(median, spread, tuple(samples))


def ratio_pairs(targets: Sequence[str]) -> list[tuple[str, str]]:
    """(target, reference) pairs to print: every target against the passthrough and
    against the local directory, never against itself, and the passthrough only
    against the local directory (the other way round is its inverse)."""
    pairs = []
    for target in targets:
        for reference in REFERENCES:
            if target == reference or (target == LOCAL and reference == PASSTHROUGH):
                continue
            if reference in targets:
                pairs.append((target, reference))
    return pairs


def ratio(value: Summary | None, reference: Summary | None) -> float | None:
    if value is None or reference is None or reference.median <= 0:
        return None
    return value.median / reference.median


def floor_ops_per_s(passthrough_ops_per_s: float, round_trip_s: float, fsync_s: float) -> float:
    """1 / (passthrough op time + gRPC round trip + fsync): what one durable,
    sequential metadata operation of a pyfuse3 client can reach at best."""
    return 1.0 / (1.0 / passthrough_ops_per_s + round_trip_s + fsync_s)
