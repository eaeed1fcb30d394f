"""A bounded cache of chunk bytes, keyed by chunk id: chunks are immutable, so a cached
range never goes stale and needs no invalidation (DESIGN.md, "Data").

Owns which byte ranges of which chunks are held, least recently used chunks evicted
first, and the fetches in flight (a read and a read-ahead of the same range share one
fetch). It never decides what to read ahead; the caller fetches through it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from dfs.client.writebuffer import Extent, lay_over, merge_into

Fetch = Callable[[int, int, int], Awaitable[bytes]]  # (chunk_id, offset, length) -> bytes


class ChunkCache:
    """Ranges of chunks, at most `capacity` bytes of them (0: nothing is kept)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: OrderedDict[int, list[Extent]] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[int, list[tuple[int, int, asyncio.Future[bytes]]]] = {}
        self.hits = 0  # bytes served from the cache
        self.misses = 0  # bytes fetched

    @property
    def held(self) -> int:
        return self._bytes

    async def read(self, chunk_id: int, offset: int, length: int, fetch: Fetch) -> bytes:
        """Bytes [offset, offset + length) of a chunk: what the cache holds, the rest
        fetched (joining a fetch already in flight where one covers it) and kept."""
        result = bytearray(length)
        end = offset + length
        held = self._chunks.get(chunk_id)
        gaps: list[tuple[int, int]] = [(offset, end)]
        if held is not None:
            self._chunks.move_to_end(chunk_id)
            lay_over(result, offset, held)
            gaps = _gaps(held, offset, end)
        self.hits += length - sum(hi - lo for lo, hi in gaps)
        pieces = await asyncio.gather(*(self._fetch(chunk_id, lo, hi, fetch) for lo, hi in gaps))
        for (lo, hi), piece in zip(gaps, pieces, strict=True):
            result[lo - offset : hi - offset] = piece
        return bytes(result)

    async def _fetch(self, chunk_id: int, lo: int, hi: int, fetch: Fetch) -> bytes:
        for start, stop, pending in self._inflight.get(chunk_id, ()):
            if start <= lo and hi <= stop:
                data = await asyncio.shield(pending)
                return data[lo - start : hi - start]
        self.misses += hi - lo
        pending = asyncio.ensure_future(fetch(chunk_id, lo, hi - lo))
        # Its reader may be cancelled (a read-ahead at close); the error is theirs.
        pending.add_done_callback(lambda done: done.cancelled() or done.exception())
        entry = (lo, hi, pending)
        self._inflight.setdefault(chunk_id, []).append(entry)
        try:
            data = await asyncio.shield(pending)
        finally:
            waiting = self._inflight.get(chunk_id, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._inflight.pop(chunk_id, None)
        self.keep(chunk_id, lo, data)
        return data

    def keep(self, chunk_id: int, offset: int, data: bytes) -> None:
        """Hold bytes of a chunk from `offset` (read, or just written)."""
        if not self.capacity or len(data) > self.capacity:
            return
        extents = self._chunks.setdefault(chunk_id, [])
        self._chunks.move_to_end(chunk_id)
        self._bytes += merge_into(extents, offset, data)
        while self._bytes > self.capacity and len(self._chunks) > 1:
            _, evicted = self._chunks.popitem(last=False)
            self._bytes -= sum(len(extent.data) for extent in evicted)


def _gaps(extents: list[Extent], lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of [lo, hi) no extent covers."""
    gaps = []
    position = lo
    for extent in extents:
        if extent.end <= position:
            continue
        if extent.offset >= hi:
            break
        if extent.offset > position:
            gaps.append((position, extent.offset))
        position = max(position, extent.end)
        if position >= hi:
            break
    if position < hi:
        gaps.append((position, hi))
    return gaps
