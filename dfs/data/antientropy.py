"""Anti-entropy on a data server: compare the live chunks it holds with the current
ring's placement, push a copy to every live home that lacks one, and drop the copies
it holds but no longer owns once every home confirms a verified copy. This one walk
is repair (a home left or was away), rebalance (a server joined or changed weight)
and drain (a draining server is no home, so it pushes everything away and drops it).

Owns the walk over held chunks, the pushes and the drops. Only chunks the metadata
service reports as referenced are pushed or dropped (orphans are the sweep's), each
pushed from one holder: the first holder in the ring's read order. A copy is dropped
only when this server is not among the chunk's homes, all R homes are up and each
answered that it holds the chunk whole and verified, and no newer ring is known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from dfs.client.replicas import upload_pieces
from dfs.client.retry import LeaderChannels
from dfs.data.chain import PeerChannels
from dfs.data.checksum import whole_checksum
from dfs.data.chunkrefs import held_pages
from dfs.data.pacing import BytePacer
from dfs.data.periodic import every
from dfs.data.ringview import RingView
from dfs.data.service import MAX_HAS_CHUNKS
from dfs.data.store import ChunkStore, ChunkStoreError
from dfs.placement.members import Member, MemberState
from dfs.placement.ring import Ring, RingCache
from dfs.rpc import data_pb2

log = logging.getLogger(__name__)

PASS_INTERVAL_S = 10.0
BATCH = 256  # held chunks compared per round trip to each peer
PEER_TIMEOUT_S = 30.0
OK = data_pb2.CHUNK_STATUS_OK


@dataclass(frozen=True, slots=True)
class PassFigures:
    """What the last complete pass found; reported to the leader with heartbeats."""

    epoch: int = 0  # ring epoch the pass compared against (0 = no pass yet)
    live_held: int = 0  # live chunks held here after the pass
    # Live chunks whose homes hold fewer than R copies, counted by the one holder that
    # pushes (so the leader may add the figures of every server).
    under_replicated: int = 0
    misplaced: int = 0  # live copies held here that are no home's, still to drop


class AntiEntropy:
    """Pushes of missing copies from this server, drops of copies it does not own."""

    def __init__(
        self,
        channels: LeaderChannels,
        store: ChunkStore,
        ring: RingView,
        self_addr: str,
        peers: PeerChannels,
        pacer: BytePacer | None = None,
        interval_s: float = PASS_INTERVAL_S,
    ) -> None:
        self.channels = channels
        self.store = store
        self.ring = ring
        self.self_addr = self_addr
        self.peers = peers
        self.pacer = pacer or BytePacer(0)
        self.interval_s = interval_s
        self._rings = RingCache()
        self.pushed = 0  # copies pushed since start
        self.pushed_bytes = 0
        self.dropped = 0  # copies dropped since start
        self.last = PassFigures()
        self.wake = asyncio.Event()  # set to start a pass now (ring changed)

    @property
    def under_replicated(self) -> int:
        return self.last.under_replicated

    async def loop(self, stop: asyncio.Event) -> None:
        await every(self.interval_s, self.run_pass, stop, "anti-entropy", wake=self.wake)

    async def run_pass(self) -> int:
        """One walk over every held chunk; the number of copies pushed."""
        config = self.ring.config
        if config is None:
            return 0
        ring = self._rings.get(config)
        totals = _Tally()
        async for _, refs in held_pages(self.store, self.channels, BATCH):
            await self._settle(ring, sorted(refs.live), totals)
        self.pushed += totals.pushed
        self.dropped += totals.dropped
        self.last = PassFigures(ring.epoch, totals.live_held, totals.under, totals.misplaced)
        if totals.pushed or totals.dropped:
            log.info("anti-entropy at epoch %d: pushed %d copies, dropped %d; %d chunks "
                     "under-replicated, %d copies misplaced", ring.epoch, totals.pushed,
                     totals.dropped, totals.under, totals.misplaced)
        return totals.pushed

    async def _settle(self, ring: Ring, live: Sequence[int], totals: _Tally) -> None:
        """Push missing copies of `live` chunks to their live homes, then drop the
        copies held here that belong elsewhere."""
        if not live:
            return
        homes = {chunk_id: ring.preference_list(chunk_id) for chunk_id in live}
        asked = {m.addr for hs in homes.values() for m in hs
                 if m.state is MemberState.UP and m.addr != self.self_addr}
        held_by = {addr: await self._has(addr, live) for addr in asked}
        not_mine: list[int] = []
        for chunk_id in live:
            holders = {addr for addr, present in held_by.items() if present.get(chunk_id)}
            holders.add(self.self_addr)
            chunk_homes = homes[chunk_id]
            missing = [m for m in chunk_homes if m.state is MemberState.UP
                       and m.addr in held_by and m.addr not in holders]
            copies_on_homes = sum(1 for m in chunk_homes if m.addr in holders)
            first = self._first_holder(ring, chunk_id, holders)
            if first and copies_on_homes < ring.replicas:
                totals.under += 1
            if missing and first:
                pushed = await self._push(chunk_id, ring.epoch, missing)
                totals.pushed += pushed
                if copies_on_homes < ring.replicas and copies_on_homes + pushed >= ring.replicas:
                    totals.under -= 1
            if all(m.addr != self.self_addr for m in chunk_homes):
                not_mine.append(chunk_id)
        dropped = await self._drop_confirmed(ring, not_mine, homes)
        totals.dropped += dropped
        totals.live_held += len(live) - dropped
        totals.misplaced += len(not_mine) - dropped

    async def _drop_confirmed(
        self, ring: Ring, chunk_ids: Sequence[int], homes: dict[int, tuple[Member, ...]]
    ) -> int:
        """Drop the copies of `chunk_ids` (none of them ours) whose every home is up
        and holds a verified copy; the number dropped."""
        if not chunk_ids or not self._ring_is_current(ring):
            return 0
        candidates = [c for c in chunk_ids if len(homes[c]) == ring.replicas
                      and all(m.state is MemberState.UP for m in homes[c])]
        asked = {m.addr for c in candidates for m in homes[c]}
        verified = {addr: await self._has(addr, candidates, verify=True) for addr in asked}
        confirmed = [c for c in candidates
                     if all(verified[m.addr].get(c) for m in homes[c])]
        if not confirmed or not self._ring_is_current(ring):
            return 0
        return await asyncio.to_thread(
            lambda: sum(self.store.delete(chunk_id) for chunk_id in confirmed)
        )

    def _ring_is_current(self, ring: Ring) -> bool:
        """Drops follow only the newest ring: a newer one may make this server a home."""
        config = self.ring.config
        return config is not None and config.epoch == ring.epoch and not self.ring.behind.is_set()

    def _first_holder(self, ring: Ring, chunk_id: int, holders: set[str]) -> bool:
        """Whether this server is the first holder in read order (so one pushes)."""
        for member in ring.read_order(chunk_id):
            if member.addr in holders:
                return member.addr == self.self_addr
        return True  # not on the ring at all (e.g. out): it still has the only copy

    async def _has(self, addr: str, chunk_ids: Sequence[int],
                   verify: bool = False) -> dict[int, bool]:
        """Which of the ids `addr` holds (whole and verified, when asked); {} when it
        does not answer (then nothing is pushed to it, nor dropped for it, this pass)."""
        present: dict[int, bool] = {}
        try:
            for first in range(0, len(chunk_ids), MAX_HAS_CHUNKS):
                part = list(chunk_ids[first : first + MAX_HAS_CHUNKS])
                reply = await self.peers.stub(addr).HasChunks(
                    data_pb2.HasChunksRequest(chunk_ids=part, verify=verify),
                    timeout=PEER_TIMEOUT_S,
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
            await self.pacer.spend(len(data))
            if await self._upload(target.addr, chunk_id, pieces):
                pushed += 1
                self.pushed_bytes += len(data)
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


@dataclass
class _Tally:
    pushed: int = 0
    dropped: int = 0
    under: int = 0
    misplaced: int = 0
    live_held: int = 0
