"""Which of a data server's held chunks the namespace still references, and which a
live session may still commit, asked of the metadata service (Cluster.ListChunkRefs)
one page of held ids at a time.

Owns the paging and the reading of the answer. Shared by anti-entropy (push and drop
only live chunks) and the orphan sweep (delete only chunks nobody can commit).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc.aio

from dfs.client.retry import LeaderChannels
from dfs.data.store import ChunkStore
from dfs.rpc import meta_pb2, meta_pb2_grpc

MIN_PAGE = 1000


@dataclass(frozen=True, slots=True)
class HeldRefs:
    """What the namespace said about a run of held ids."""

    live: frozenset[int]  # the held ids with at least one reference
    # From the first page: the id counter and the live sessions' (first, count)
    # ranges, sorted. Old ids never join a range, and ranges only go when their
    # session does, so what was uncommittable then stays so for every later page.
    next_chunk_id: int
    allocated: tuple[tuple[int, int], ...]

    def committable(self, chunk_id: int) -> bool:
        """Whether a live session could still commit this id (or it is not allocated
        yet): such a chunk is an upload in progress, never garbage."""
        if chunk_id >= self.next_chunk_id:
            return True
        index = bisect_right(self.allocated, (chunk_id, 2**64)) - 1
        return index >= 0 and chunk_id < sum(self.allocated[index])


async def held_pages(
    store: ChunkStore, channels: LeaderChannels, batch: int
) -> AsyncIterator[tuple[list[int], HeldRefs]]:
    """Every held id in pages of `batch`, in id order, each with what the namespace
    says of it (asked when the page is reached, so a long walk sees fresh answers)."""
    start = 0
    while True:
        held = store.chunk_ids(start, batch)
        if not held:
            return
        yield held, await held_refs(channels, held)
        if len(held) < batch or held[-1] == 2**64 - 1:
            return
        start = held[-1] + 1


async def held_refs(channels: LeaderChannels, held: Sequence[int]) -> HeldRefs:
    """ListChunkRefs over the span of `held` (sorted ids)."""
    wanted = set(held)
    live: set[int] = set()
    first_reply: meta_pb2.ListChunkRefsReply | None = None
    start, last = held[0], held[-1]
    while True:
        request = meta_pb2.ListChunkRefsRequest(start=start, limit=max(len(held), MIN_PAGE))

        async def attempt(channel: grpc.aio.Channel, timeout: float,
                          request: Any = request) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).ListChunkRefs(
                request, timeout=timeout
            )

        reply: meta_pb2.ListChunkRefsReply = await channels.call(attempt, deadline_s=10)
        first_reply = first_reply or reply
        live.update(c for c in reply.chunk_ids if c in wanted)
        if reply.next == 0 or reply.next > last or not reply.chunk_ids:
            allocated = tuple(zip(first_reply.allocated_first, first_reply.allocated_count,
                                  strict=True))
            return HeldRefs(frozenset(live), first_reply.next_chunk_id, allocated)
        start = reply.next
