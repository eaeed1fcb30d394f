"""Which of a data server's held chunks the namespace still references, asked of the
metadata service (Cluster.ListChunkRefs) one page of held ids at a time.

Owns the paging and the sweep horizon that comes with it. Shared by anti-entropy
(push and drop only live chunks) and the orphan sweep (delete only dead ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc.aio

from dfs.client.retry import LeaderChannels
from dfs.rpc import meta_pb2, meta_pb2_grpc

MIN_PAGE = 1000


@dataclass(frozen=True, slots=True)
class HeldRefs:
    """What the namespace said about a run of held ids."""

    live: frozenset[int]  # the held ids with at least one reference
    # Ids below this were allocated to no live session when asked. The horizon only
    # grows, so the first page's value holds for every later page too.
    sweep_horizon: int


async def held_refs(channels: LeaderChannels, held: Sequence[int]) -> HeldRefs:
    """ListChunkRefs over the span of `held` (sorted ids)."""
    wanted = set(held)
    live: set[int] = set()
    horizon: int | None = None
    start, last = held[0], held[-1]
    while True:
        request = meta_pb2.ListChunkRefsRequest(start=start, limit=max(len(held), MIN_PAGE))

        async def attempt(channel: grpc.aio.Channel, timeout: float,
                          request: Any = request) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).ListChunkRefs(
                request, timeout=timeout
            )

        reply: meta_pb2.ListChunkRefsReply = await channels.call(attempt, deadline_s=10)
        if horizon is None:
            horizon = reply.sweep_horizon
        live.update(c for c in reply.chunk_ids if c in wanted)
        if reply.next == 0 or reply.next > last or not reply.chunk_ids:
            return HeldRefs(frozenset(live), horizon)
        start = reply.next
