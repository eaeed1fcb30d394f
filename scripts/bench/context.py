"""What a workload is handed: its own directory, the sizes, the cache dropper, a clock.

Workloads stay free of argument parsing and output; they measure and return figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from caches import CacheDropper
from figures import Figure
from sizes import Sizes


@dataclass
class Bench:
    """The run-wide inputs of every workload."""

    root: Path
    sizes: Sizes
    drop_caches: CacheDropper
    progress: Callable[[str], None]


class Deadline:
    """A phase's time cap: loops ask `expired()` between operations."""

    def __init__(self, seconds: float) -> None:
        self.ends_at = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.ends_at


def rate(name: str, done: int, planned: int, elapsed_s: float, per: float = 1.0) -> Figure:
    """`done / per` units per second; notes a phase that stopped before `planned`."""
    value = (done / per) / elapsed_s if elapsed_s > 0 else 0.0
    note = "" if done >= planned else f"capped: {done} of {planned} in {elapsed_s:.1f} s"
    return Figure(name, value, note)
