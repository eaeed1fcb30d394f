"""Repair on a data server: replace copies that failed verification (found by a read,
the scrubber or a verified presence check) with a good copy from another ring member.

Owns the repair pass. A repair only ever replaces a copy the
store marked corrupt with bytes another server verified for the same id; it never
creates chunks this server did not hold and never deletes any.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio

from dfs.data.chain import PeerChannels
from dfs.data.checksum import whole_checksum
from dfs.data.periodic import every
from dfs.data.ringview import RingView
from dfs.data.store import ChunkConflict, ChunkStore, ChunkStoreError
from dfs.placement.members import MemberState
from dfs.placement.ring import Ring, RingCache
from dfs.rpc import data_pb2

log = logging.getLogger(__name__)

# A repair pass costs nothing when no copy is marked, so it runs often: a copy found
# bad by a reader is replaced within about a second.
REPAIR_INTERVAL_S = 1.0
PEER_TIMEOUT_S = 30.0
OK = data_pb2.CHUNK_STATUS_OK


class Upkeep:
    """Repair of corrupt copies for one data server."""

    def __init__(self, store: ChunkStore, ring: RingView, self_addr: str,
                 peers: PeerChannels) -> None:
        self.store = store
        self.ring = ring
        self.self_addr = self_addr
        self.peers = peers
        self._rings = RingCache()
        self.repaired = 0
        self.unrepaired = 0  # corrupt copies with no good copy found on the last pass

    async def loop(self, stop: asyncio.Event) -> None:
        await every(REPAIR_INTERVAL_S, self.repair_once, stop, "repair")

    async def repair_once(self) -> int:
        """Replace every copy marked corrupt with a good one from a peer; the number
        repaired."""
        config = self.ring.config
        queue = self.store.repair_queue()
        if config is None or not queue:
            return 0
        ring = self._rings.get(config)
        repaired = 0
        unrepaired = 0
        for chunk_id in queue:
            if not self.store.has(chunk_id):
                continue  # deleted since (GC): nothing to repair
            if await self._repair(ring, chunk_id):
                repaired += 1
            else:
                unrepaired += 1
        self.repaired += repaired
        self.unrepaired = unrepaired
        return repaired

    async def _repair(self, ring: Ring, chunk_id: int) -> bool:
        for member in ring.read_order(chunk_id):
            if member.addr == self.self_addr or member.state is MemberState.OUT:
                continue
            data = await self._fetch(member.addr, chunk_id)
            if data is None:
                continue
            try:
                await asyncio.to_thread(self.store.put, chunk_id, data, whole_checksum(data))
            except ChunkConflict:
                # Our damaged copy's header still reads and names other content: the
                # peer's copy is not the same chunk, so ours is left for a person.
                log.error("chunk %016x: the copy on %s differs from ours; not repaired",
                          chunk_id, member.addr)
                return False
            except ChunkStoreError as err:
                log.warning("repairing chunk %016x: %s", chunk_id, err)
                return False
            log.info("repaired chunk %016x from %s", chunk_id, member.addr)
            return True
        log.warning("chunk %016x: no good copy found on any ring member", chunk_id)
        return False

    async def _fetch(self, addr: str, chunk_id: int) -> bytes | None:
        """The whole chunk from a peer (verified by the peer as it reads), or None."""
        parts: list[bytes] = []
        try:
            call = self.peers.stub(addr).ReadChunk(
                data_pb2.ReadChunkRequest(chunk_id=chunk_id), timeout=PEER_TIMEOUT_S
            )
            async for reply in call:
                if reply.status != OK:
                    return None
                parts.append(reply.data)
        except grpc.aio.AioRpcError:
            return None
        return b"".join(parts)
