"""Chunk bookkeeping: the id counter, ranges allocated to sessions, reference counts and
the GC queue.

A reference is one slice naming the chunk; a chunk whose count reaches zero enters the
GC queue until a data server acknowledges deleting it. Knows nothing of inodes.
"""

from __future__ import annotations

from collections.abc import Iterable

FIRST_CHUNK_ID = 1


class ChunkTable:
    __slots__ = ("gc_queue", "next_chunk_id", "ranges", "refs")

    def __init__(self) -> None:
        self.next_chunk_id = FIRST_CHUNK_ID
        self.refs: dict[int, int] = {}
        # Insertion-ordered set: data servers fetch the oldest releases first.
        self.gc_queue: dict[int, None] = {}
        # session -> allocated (first, count) ranges, oldest first.
        self.ranges: dict[int, list[tuple[int, int]]] = {}

    def allocate(self, session: int, count: int) -> int:
        first = self.next_chunk_id
        self.next_chunk_id = first + count
        ranges = self.ranges.setdefault(session, [])
        if ranges and ranges[-1][0] + ranges[-1][1] == first:
            # Back-to-back allocations of one session stay one range, so ownership
            # checks stay short for a busy writer.
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + count)
        else:
            ranges.append((first, count))
        return first

    def owned_by(self, session: int, chunk_id: int) -> bool:
        return any(
            first <= chunk_id < first + count for first, count in self.ranges.get(session, ())
        )

    def session_closed(self, session: int) -> None:
        self.ranges.pop(session, None)

    def add_ref(self, chunk_id: int) -> None:
        self.refs[chunk_id] = self.refs.get(chunk_id, 0) + 1

    def drop_ref(self, chunk_id: int) -> None:
        remaining = self.refs[chunk_id] - 1
        if remaining:
            self.refs[chunk_id] = remaining
        else:
            del self.refs[chunk_id]
            self.gc_queue[chunk_id] = None

    def drop_refs(self, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            self.drop_ref(chunk_id)

    def ack_gc(self, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            self.gc_queue.pop(chunk_id, None)

    def allocated_from(self, start: int) -> list[tuple[int, int]]:
        """(first, count) of every live session's range that ends above `start`,
        sorted: the ids a live session may still commit."""
        return sorted(
            (first, count)
            for ranges in self.ranges.values()
            for first, count in ranges
            if first + count > start
        )

    def sweep_horizon(self) -> int:
        """Chunk ids below this are either referenced or garbage: no live session can
        still commit them."""
        lowest = [first for ranges in self.ranges.values() for first, _ in ranges]
        return min(lowest, default=self.next_chunk_id)
