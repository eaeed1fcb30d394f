"""Garbage collection on a data server: delete the local copies of chunks the
namespace released (the metadata GC queue), and acknowledge a chunk only once no
server of the ring still holds a copy.

Owns the FetchGC -> delete -> confirm -> AckGC cycle. The queue is shared by every
data server and one AckGC removes an id for all of them, so an id is acknowledged
only after every ring member that could hold it (all but `out` ones) answered
HasChunks with "absent" (presence, so a corrupt copy still counts as held); an
unreachable member keeps the id queued for a later pass.
It never deletes anything the metadata service did not release.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from dfs.client.retry import LeaderChannels
from dfs.data.chain import PeerChannels
from dfs.data.periodic import every
from dfs.data.ringview import RingView
from dfs.data.service import MAX_HAS_CHUNKS
from dfs.data.store import ChunkStore
from dfs.placement.members import MemberState
from dfs.rpc import data_pb2, meta_pb2, meta_pb2_grpc

log = logging.getLogger(__name__)

GC_INTERVAL_S = 2.0
GC_BATCH = MAX_HAS_CHUNKS  # one HasChunks call per peer per batch
PEER_TIMEOUT_S = 10.0


class GarbageCollector:
    """One data server's share of chunk garbage collection."""

    def __init__(
        self,
        channels: LeaderChannels,
        server_id: int,
        self_addr: str,
        store: ChunkStore,
        ring: RingView,
        peers: PeerChannels,
    ) -> None:
        self.channels = channels
        self.server_id = server_id
        self.self_addr = self_addr
        self.store = store
        self.ring = ring
        self.peers = peers
        self.deleted = 0  # copies removed here, for logs and tests

    async def loop(self, stop: asyncio.Event) -> None:
        await every(GC_INTERVAL_S, self.collect_once, stop, "garbage collection",
                    first_pass_now=True)

    async def collect_once(self) -> int:
        """One pass; the number of ids acknowledged."""
        released = await self._fetch()
        if not released:
            return 0
        deleted = await asyncio.to_thread(
            lambda: sum(self.store.delete(chunk_id) for chunk_id in released)
        )
        if deleted:
            self.deleted += deleted
            log.info("deleted %d released chunks", deleted)
        gone = await self._gone_everywhere(released)
        if gone:
            await self._ack(gone)
        return len(gone)

    async def _fetch(self) -> list[int]:
        request = meta_pb2.FetchGCRequest(id=self.server_id, limit=GC_BATCH)

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).FetchGC(request, timeout=timeout)

        reply: meta_pb2.FetchGCReply = await self.channels.call(attempt, deadline_s=5.0)
        return list(reply.chunk_ids)

    async def _ack(self, chunk_ids: Sequence[int]) -> None:
        request = meta_pb2.AckGCRequest(id=self.server_id, chunk_ids=list(chunk_ids))

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).AckGC(request, timeout=timeout)

        await self.channels.call(attempt, deadline_s=5.0)

    async def _gone_everywhere(self, chunk_ids: Sequence[int]) -> list[int]:
        """The ids no other ring member holds; [] when the ring is unknown or a member
        that may hold copies does not answer."""
        config = self.ring.config
        if config is None:
            return []
        others = [
            member.addr
            for member in config.members
            if member.state is not MemberState.OUT and member.addr != self.self_addr
        ]
        still_held: set[int] = set()
        for addr in others:
            try:
                reply = await self.peers.stub(addr).HasChunks(
                    data_pb2.HasChunksRequest(chunk_ids=list(chunk_ids)), timeout=PEER_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as err:
                log.info("gc: %s did not answer (%s); acknowledging later", addr,
                         err.code().name)
                return []
            still_held.update(c for c, held in zip(chunk_ids, reply.present, strict=True) if held)
        return [chunk_id for chunk_id in chunk_ids if chunk_id not in still_held]
