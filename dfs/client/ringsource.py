"""The client's copy of the ring: fetched from the metadata service, rebuilt once per
epoch, refreshed when a data server says the client's epoch is stale.

Owns the cached Ring and single-flight refreshes. It never computes placement itself
(dfs.placement does) and never talks to data servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dfs.placement.ring import Ring, RingCache
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2

# known_epoch -> the current ring (the metadata client's GetRing)
FetchRing = Callable[[int], Awaitable[common_pb2.Ring]]


class RingSource:
    """The newest ring this client has fetched."""

    def __init__(self, fetch: FetchRing) -> None:
        self._fetch = fetch
        self._cache = RingCache()
        self._ring: Ring | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Ring:
        """The cached ring, fetched on first use."""
        if self._ring is None:
            return await self.refresh(0)
        return self._ring

    async def refresh(self, stale_epoch: int) -> Ring:
        """A ring newer than `stale_epoch` if the metadata service has one (else the
        newest it has). Concurrent callers share one fetch."""
        async with self._lock:
            if self._ring is not None and self._ring.epoch > stale_epoch:
                return self._ring  # another caller refreshed while this one waited
            config = config_from_proto(await self._fetch(0))
            if self._ring is None or config.epoch >= self._ring.epoch:
                self._ring = self._cache.get(config)
            return self._ring

    def adopt(self, ring: common_pb2.Ring) -> None:
        """A ring pushed by a watch; older ones are ignored."""
        config = config_from_proto(ring)
        if self._ring is None or config.epoch > self._ring.epoch:
            self._ring = self._cache.get(config)
