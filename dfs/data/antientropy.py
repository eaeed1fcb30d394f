"""Anti-entropy on a data server: compare the live chunks it holds with the current
ring's placement and push a copy to every live home that lacks one, so a chunk
written while a home was away, or whose home left the ring, gets back to R copies.

Owns the walk over held chunks and the pushes. Only chunks the metadata service
reports as referenced are pushed (never orphans), each from one holder: the first
holder in the ring's read order. It adds copies only: dropping copies a server no
longer owns is left to a later pass that confirms the owners first (not built yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc.aio

from dfs.client.replicas import upload_pieces
from dfs.client.retry import LeaderChannels, LeaderUnavailable
from dfs.data.chain import PeerChannels
from dfs.data.checksum import whole_checksum
from dfs.data.ringview import RingView
from dfs.data.service import MAX_HAS_CHUNKS
from dfs.data.store import ChunkStore, ChunkStoreError
from dfs.placement.members import Member, MemberState
from dfs.placement.ring import Ring, RingCache
from dfs.rpc import data_pb2, meta_pb2, meta_pb2_grpc

log = logging.getLogger(__name__)

PASS_INTERVAL_S = 10.0
BATCH = 256  # held chunks compared per round trip to each peer
PEER_TIMEOUT_S = 30.0
OK = data_pb2.CHUNK_STATUS_OK


class AntiEntropy:
    """Pushes of missing copies from this server to the chunks' live homes."""

    def __init__(
        self,
        channels: LeaderChannels,
        store: ChunkStore,
        ring: RingView,
        self_addr: str,
        peers: PeerChannels,
    ) -> None:
        self.channels = channels
        self.store = store
        self.ring = ring
        self.self_addr = self_addr
        self.peers = peers
        self._rings = RingCache()
        self.pushed = 0
        self.under_replicated = 0  # live chunks with fewer than R copies on their homes

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PASS_INTERVAL_S)
            if stop.is_set():
                return
            try:
                await self.run_pass()
            except (LeaderUnavailable, grpc.aio.AioRpcError) as err:
                log.warning("anti-entropy pass stopped: %s", err)

    async def run_pass(self) -> int:
        """One walk over every held chunk; the number of copies pushed."""
        config = self.ring.config
        if config is None:
            return 0
        ring = self._rings.get(config)
        pushed = 0
        under = 0
        start = 0
        while True:
            held = self.store.chunk_ids(start, BATCH)
            if not held:
                break
            live = await self._live_among(held)
            batch_pushed, batch_under = await self._settle(ring, live)
            pushed += batch_pushed
            under += batch_under
            if len(held) < BATCH or held[-1] == 2**64 - 1:
                break
            start = held[-1] + 1
        self.pushed += pushed
        self.under_replicated = under
        if pushed:
            log.info("anti-entropy pushed %d copies; %d chunks under-replicated", pushed, under)
        return pushed

    async def _live_among(self, held: Sequence[int]) -> list[int]:
        """The held ids the namespace still references (ListChunkRefs over their span)."""
        wanted = set(held)
        live: list[int] = []
        start, last = held[0], held[-1]
        while True:
            request = meta_pb2.ListChunkRefsRequest(start=start, limit=max(len(held), 1000))

            async def attempt(channel: grpc.aio.Channel, timeout: float,
                              request: Any = request) -> Any:
                return await meta_pb2_grpc.ClusterStub(channel).ListChunkRefs(
                    request, timeout=timeout
                )

            reply: meta_pb2.ListChunkRefsReply = await self.channels.call(attempt, deadline_s=10)
            live += [c for c in reply.chunk_ids if c in wanted]
            if reply.next == 0 or reply.next > last or not reply.chunk_ids:
                return live
            start = reply.next

    async def _settle(self, ring: Ring, live: Sequence[int]) -> tuple[int, int]:
        """Push missing copies of `live` chunks to their live homes: (pushed, under)."""
        if not live:
            return 0, 0
        homes = {chunk_id: ring.preference_list(chunk_id) for chunk_id in live}
        asked = {m.addr: m for hs in homes.values() for m in hs
                 if m.state is MemberState.UP and m.addr != self.self_addr}
        held_by = {addr: await self._has(addr, live) for addr in asked}
        pushed = under = 0
        for chunk_id in live:
            holders = {addr for addr, present in held_by.items() if present.get(chunk_id)}
            holders.add(self.self_addr)
            missing = [m for m in homes[chunk_id] if m.state is MemberState.UP
                       and m.addr in held_by and m.addr not in holders]
            copies_on_homes = sum(1 for m in homes[chunk_id] if m.addr in holders)
            if copies_on_homes < ring.replicas:
                under += 1
            if missing and self._first_holder(ring, chunk_id, holders):
                pushed += await self._push(chunk_id, ring.epoch, missing)
        return pushed, under

    def _first_holder(self, ring: Ring, chunk_id: int, holders: set[str]) -> bool:
        """Whether this server is the first holder in read order (so one pushes)."""
        for member in ring.read_order(chunk_id):
            if member.addr in holders:
                return member.addr == self.self_addr
        return True  # not on the ring at all (e.g. out): it still has the only copy

    async def _has(self, addr: str, chunk_ids: Sequence[int]) -> dict[int, bool]:
        """Which of the ids `addr` holds verified; {} when it does not answer (then
        nothing is pushed to it this pass)."""
        present: dict[int, bool] = {}
        try:
            for first in range(0, len(chunk_ids), MAX_HAS_CHUNKS):
                part = list(chunk_ids[first : first + MAX_HAS_CHUNKS])
                reply = await self.peers.stub(addr).HasChunks(
                    data_pb2.HasChunksRequest(chunk_ids=part), timeout=PEER_TIMEOUT_S
                )
                present.update(zip(part, reply.present, strict=True))
        except grpc.aio.AioRpcError as err:
            log.info("anti-entropy: %s did not answer (%s)", addr, err.code().name)
            return {}
        return present

    async def _push(self, chunk_id: int, epoch: int, targets: Sequence[Member]) -> int:
        try:
            data = await asyncio.to_thread(self.store.read, chunk_id)
        except ChunkStoreError as err:  # corrupt here: repair fixes it first
            log.info("anti-entropy: not pushing %016x: %s", chunk_id, err)
            return 0
        pieces = upload_pieces(chunk_id, epoch, data, whole_checksum(data))
        pushed = 0
        for target in targets:
            if await self._upload(target.addr, chunk_id, pieces):
                pushed += 1
        return pushed

    async def _upload(
        self, addr: str, chunk_id: int, pieces: Sequence[data_pb2.WriteChunkRequest]
    ) -> bool:
        async def stream() -> AsyncIterator[data_pb2.WriteChunkRequest]:
            for piece in pieces:
                yield piece

        try:
            reply = await self.peers.stub(addr).WriteChunk(stream(), timeout=PEER_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            log.info("anti-entropy: push of %016x to %s failed: %s", chunk_id, addr,
                     err.code().name)
            return False
        if reply.status != OK:
            log.info("anti-entropy: push of %016x to %s: %s", chunk_id, addr,
                     data_pb2.ChunkStatus.Name(reply.status))
            return False
        log.debug("pushed %016x to %s", chunk_id, addr)
        return True
