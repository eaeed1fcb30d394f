"""Chunk I/O with replicas: write a chunk to R data servers, read a byte range from
the first healthy copy.

Replication is by the client writing to every replica in parallel, chosen by
measurement (scripts/bench_data.py; docs/benchmarks.md, "Data path"): on
the development machine (2 cores, one disk shared by all replicas) parallel writes
of 4 MiB chunks were as fast as a chain through forward_to with 1 in flight (45 vs
43 MB/s median) and faster with 4 (71 vs 58; 125 vs 81 on a quieter run), since the
copies share CPU and disk either way and a chain adds a store-and-forward hop per
replica. Parallel also lets the client see every replica's own answer and replace a
failed one. Chain mode stays available (`chain=True`) for networks where the
client's uplink is the bottleneck.

Rules (DESIGN.md, "Data"):
- A write goes to the ring's write targets (R live servers); a target that fails is
  replaced by the next live server in ring order, where readers look next. It is
  acknowledged with R durable copies, or with at least min_replicas when the ring
  allows degraded writes (then reported under-replicated). Fewer: EIO, or ENOSPC
  when full disks were the reason.
- STALE_EPOCH from any replica: refresh the ring and place the chunk again.
- A read tries the ring's read order (live homes, then the walk, then down servers);
  a transport error, CORRUPT or NOT_FOUND moves to the next copy. Before giving up it
  refreshes the ring once. All copies NOT_FOUND raises ChunkMissing, so the caller
  can refetch its block map.
Errors are OSError(errno). This module never talks to the metadata service except
through the RingSource it is given.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc.aio

from dfs.client.replicas import (
    DataChannels,
    read_copy,
    upload_pieces,
    write_copy,
)
from dfs.client.ringsource import RingSource
from dfs.data.checksum import whole_checksum
from dfs.placement.members import Member, MemberState
from dfs.placement.ring import Ring
from dfs.rpc import data_pb2

log = logging.getLogger(__name__)

# A ring changing this many times during one write means something is wrong.
MAX_PLACEMENT_ROUNDS = 4

OK = data_pb2.CHUNK_STATUS_OK
NOT_FOUND = data_pb2.CHUNK_STATUS_NOT_FOUND
STALE_EPOCH = data_pb2.CHUNK_STATUS_STALE_EPOCH
NO_SPACE = data_pb2.CHUNK_STATUS_NO_SPACE


class ChunkMissing(OSError):
    """Every copy answered NOT_FOUND: the chunk is gone (the block map may be stale)."""

    def __init__(self, chunk_id: int) -> None:
        super().__init__(errno.EIO, f"chunk {chunk_id:016x} not found on any data server")
        self.chunk_id = chunk_id


@dataclass(frozen=True)
class StoredChunk:
    """An acknowledged chunk: where its durable copies are and the epoch it was placed with."""

    chunk_id: int
    length: int
    epoch: int
    durable_at: tuple[str, ...]
    under_replicated: bool


@dataclass
class _Round:
    """What one placement attempt achieved."""

    durable_at: list[str]
    stale: bool = False
    no_space: int = 0
    failed: int = 0


class ChunkIO:
    """Replicated chunk writes and fail-over reads for one client."""

    def __init__(self, rings: RingSource, channels: DataChannels, chain: bool = False) -> None:
        self.rings = rings
        self.channels = channels
        self.chain = chain
        self.under_replicated_writes = 0

    # -- writing ---------------------------------------------------------------------

    async def write_chunk(self, chunk_id: int, data: bytes) -> StoredChunk:
        """Store `data` as chunk `chunk_id` on R replicas (see the module rules)."""
        checksum = whole_checksum(data)
        ring = await self.rings.current()
        for _ in range(MAX_PLACEMENT_ROUNDS):
            outcome = await self._place(ring, chunk_id, data, checksum)
            if outcome.stale:
                ring = await self.rings.refresh(ring.epoch)
                continue
            copies = len(outcome.durable_at)
            if copies >= ring.config.effective_min_replicas and copies > 0:
                under = copies < ring.replicas
                if under:
                    self.under_replicated_writes += 1
                    log.warning("chunk %016x written with %d of %d copies", chunk_id, copies,
                                ring.replicas)
                return StoredChunk(chunk_id, len(data), ring.epoch, tuple(outcome.durable_at),
                                   under)
            if outcome.no_space:
                raise OSError(errno.ENOSPC, "data servers are full")
            raise OSError(errno.EIO, f"chunk {chunk_id:016x}: {copies} of {ring.replicas} "
                          "copies written")
        raise OSError(errno.EIO, f"chunk {chunk_id:016x}: the ring kept changing")

    async def _place(self, ring: Ring, chunk_id: int, data: bytes, checksum: int) -> _Round:
        """Write copies to the write targets, then to further live servers in place of
        failed ones, until R are durable or no candidate is left."""
        candidates = _write_candidates(ring, chunk_id)
        outcome = _Round(durable_at=[])
        wanted = ring.replicas
        batch, candidates = candidates[:wanted], candidates[wanted:]
        chained = self.chain
        while batch:
            if chained:
                replies = await self._write_chain(ring.epoch, chunk_id, data, checksum, batch)
                chained = False
            else:
                pieces = upload_pieces(chunk_id, ring.epoch, data, checksum)
                replies = await asyncio.gather(
                    *(write_copy(self.channels, m.addr, pieces) for m in batch)
                )
            for member, reply in zip(batch, replies, strict=True):
                _tally(outcome, member.addr, reply)
            if outcome.stale:
                return outcome
            missing = wanted - len(outcome.durable_at)
            batch, candidates = candidates[:missing], candidates[missing:]
        return outcome

    async def _write_chain(
        self, epoch: int, chunk_id: int, data: bytes, checksum: int, batch: Sequence[Member]
    ) -> list[data_pb2.WriteChunkReply | grpc.aio.AioRpcError]:
        """One upload to the head, forwarded down the chain; a reply per member, each
        member's own durable copy read from the head's durable_at list."""
        pieces = upload_pieces(chunk_id, epoch, data, checksum, [m.addr for m in batch[1:]])
        head = await write_copy(self.channels, batch[0].addr, pieces)
        if isinstance(head, grpc.aio.AioRpcError) or head.status != OK:
            return [head] + [data_pb2.WriteChunkReply(status=NOT_FOUND)] * (len(batch) - 1)
        durable = set(head.durable_at)
        return [
            data_pb2.WriteChunkReply(status=OK if m.addr in durable else NOT_FOUND)
            for m in batch
        ]

    # -- reading ---------------------------------------------------------------------

    async def read_chunk(self, chunk_id: int, offset: int, length: int) -> bytes:
        """Verified bytes [offset, offset + length) of a chunk from the first copy that
        has them; ChunkMissing when every copy is NOT_FOUND, else OSError(EIO)."""
        if length <= 0:
            return b""
        ring = await self.rings.current()
        tried: set[str] = set()
        all_not_found = True
        for round_number in range(2):
            for member in ring.read_order(chunk_id):
                if member.addr in tried:
                    continue
                tried.add(member.addr)
                outcome = await read_copy(self.channels, member.addr, chunk_id, offset, length)
                if outcome.data is not None:
                    return outcome.data
                all_not_found = all_not_found and outcome.status == NOT_FOUND
                log.info("chunk %016x on %s: %s; trying the next copy", chunk_id, member.addr,
                         outcome.error)
            if round_number == 0:
                ring = await self.rings.refresh(ring.epoch)  # the ring may have moved on
        if all_not_found and tried:
            raise ChunkMissing(chunk_id)
        raise OSError(errno.EIO, f"no readable copy of chunk {chunk_id:016x}")


def _write_candidates(ring: Ring, chunk_id: int) -> list[Member]:
    """Write targets first, then every other live server in the order readers look."""
    targets = list(ring.write_targets(chunk_id))
    chosen = {m.id for m in targets}
    further = [
        m for m in ring.read_order(chunk_id) if m.state is MemberState.UP and m.id not in chosen
    ]
    return targets + further


def _tally(
    outcome: _Round, addr: str, reply: data_pb2.WriteChunkReply | grpc.aio.AioRpcError
) -> None:
    if isinstance(reply, grpc.aio.AioRpcError):
        outcome.failed += 1
    elif reply.status == OK:
        outcome.durable_at.append(addr)
    elif reply.status == STALE_EPOCH:
        outcome.stale = True
    elif reply.status == NO_SPACE:
        outcome.no_space += 1
    else:
        log.warning("upload to %s: %s %s", addr, data_pb2.ChunkStatus.Name(reply.status),
                    reply.error)
        outcome.failed += 1
