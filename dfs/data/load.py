"""Requests in flight on a data server: the heartbeat's load figure, the byte
reservations that enforce --capacity, and the wait for writes to finish at shutdown.

Owns counting only; it never touches the store or the network.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Load:
    """Counters updated on the event loop thread only (no locks needed)."""

    def __init__(self, capacity_bytes: int = 0) -> None:
        self.capacity_bytes = capacity_bytes  # 0 = no limit beyond the filesystem's
        self.requests = 0
        self.writes = 0
        self.reserved_bytes = 0  # bytes of uploads in flight, counted against capacity
        self._writes_done = asyncio.Event()
        self._writes_done.set()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self.requests += 1
        try:
            yield
        finally:
            self.requests -= 1

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        self.writes += 1
        self._writes_done.clear()
        try:
            with self.request():
                yield
        finally:
            self.writes -= 1
            if self.writes == 0:
                self._writes_done.set()

    def reserve(self, upload_bytes: int, used_bytes: int) -> bool:
        """Count an upload against --capacity; False when it would not fit."""
        if self.capacity_bytes and (
            used_bytes + self.reserved_bytes + upload_bytes > self.capacity_bytes
        ):
            return False
        self.reserved_bytes += upload_bytes
        return True

    def release(self, upload_bytes: int) -> None:
        self.reserved_bytes -= upload_bytes

    async def writes_finished(self, timeout_s: float) -> bool:
        """Wait until no upload is in flight; False when the timeout passed first."""
        try:
            await asyncio.wait_for(self._writes_done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
