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
- Hedged reads: when the copy asked is slower than nearly all recent reads of that
  size (hedge.py), the next copy is asked as well, at most HEDGED_COPIES at once; the
  first good answer wins and the other read is cancelled. A stopped or overloaded
  server then costs a read the hedge delay, not the call timeout.
Errors are OSError(errno). This module never talks to the metadata service except
through the RingSource it is given.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import grpc.aio

from dfs.client.hedge import ReadLatency
from dfs.client.replicas import (
    DataChannels,
    ReadOutcome,
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
# Copies of one chunk read at once when the first is slow: one hedge per read bounds
# the extra load to one more server.
HEDGED_COPIES = 2

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

    def __init__(self, rings: RingSource, channels: DataChannels, chain: bool = False,
                 hedge: bool = True) -> None:
        self.rings = rings
        self.channels = channels
        self.chain = chain
        self.hedge = hedge
        self.latency = ReadLatency()
        self.under_replicated_writes = 0
        self.served: Counter[str] = Counter()  # reads answered, by data server
        self.hedged_reads = 0  # reads that asked a further copy because one was slow
        self.hedge_wins = 0  # reads answered by a copy other than the first asked

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
        failures: list[ReadOutcome] = []
        for round_number in range(2):
            addrs = [m.addr for m in ring.read_order(chunk_id) if m.addr not in tried]
            tried.update(addrs)
            data = await self._first_copy(chunk_id, offset, length, addrs, failures)
            if data is not None:
                return data
            if round_number == 0:
                ring = await self.rings.refresh(ring.epoch)  # the ring may have moved on
        if failures and all(failure.status == NOT_FOUND for failure in failures):
            raise ChunkMissing(chunk_id)
        raise OSError(errno.EIO, f"no readable copy of chunk {chunk_id:016x}")

    async def _first_copy(self, chunk_id: int, offset: int, length: int, addrs: list[str],
                          failures: list[ReadOutcome]) -> bytes | None:
        """The first good answer of the copies at `addrs`, asked in order: the next one
        when the last failed, or (hedging) when it is slower than the hedge delay.
        Every failed answer is added to `failures`; None when no copy answered."""
        waiting = deque(addrs)
        asked: dict[asyncio.Task[ReadOutcome], str] = {}
        first_asked = addrs[0] if addrs else ""

        def ask_next() -> None:
            addr = waiting.popleft()
            asked[asyncio.ensure_future(self._timed_read(addr, chunk_id, offset, length))] = addr

        try:
            while waiting or asked:
                if not asked:
                    ask_next()
                may_hedge = self.hedge and waiting and len(asked) < HEDGED_COPIES
                done, _ = await asyncio.wait(
                    asked, timeout=self.latency.delay(length) if may_hedge else None,
                    return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self.hedged_reads += 1
                    log.info("chunk %016x: %s is slow; asking the next copy too", chunk_id,
                             ", ".join(asked.values()))
                    ask_next()
                    continue
                for task in done:
                    addr = asked.pop(task)
                    outcome = task.result()
                    if outcome.data is not None:
                        self.served[addr] += 1
                        self.hedge_wins += addr != first_asked
                        return outcome.data
                    failures.append(outcome)
                    log.info("chunk %016x on %s: %s; trying the next copy", chunk_id, addr,
                             outcome.error)
        finally:
            for task in asked:
                task.cancel()
        return None

    async def _timed_read(self, addr: str, chunk_id: int, offset: int,
                          length: int) -> ReadOutcome:
        started = time.monotonic()
        outcome = await read_copy(self.channels, addr, chunk_id, offset, length)
        if outcome.data is not None:
            self.latency.record(length, time.monotonic() - started)
        return outcome


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
