"""File bytes on data servers: a write becomes new immutable chunks on R replicas and
one slice commit; a read assembles a range from the block map's newest slices.

This is the client's chunk I/O as the mount uses it. It owns the packing of a write
(or of a buffer's many extents) into one chunk per block touched, chunk-id ranges,
the commit with the placement epoch, and the read path's block-map refetch on
NOT_FOUND. What it needs from the metadata service is the MetaForData protocol below;
replica choice and fail-over live in chunkio.py.
Acknowledged = R fsynced copies (or min_replicas, reported under-replicated) and the
commit chosen. Errors are OSError(errno).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from dfs.auth import ClusterSecret
from dfs.channels import CALL_TIMEOUT_S
from dfs.client.chunkcache import ChunkCache
from dfs.client.chunkio import ChunkIO, ChunkMissing, StoredChunk
from dfs.client.compaction import Compactor
from dfs.client.replicas import DataChannels
from dfs.client.ringsource import RingSource
from dfs.client.slices import pieces_of
from dfs.client.tuning import ClientTuning
from dfs.rpc import common_pb2, meta_pb2

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 << 20
# Ids fetched per AllocChunkIds: one log write per this many chunks.
ID_BATCH = 256
# Chunks of one write or read in flight at once: enough to keep 2 cores and the
# disk busy, few enough that one large write does not hold hundreds of MiB.
MAX_PARALLEL_CHUNKS = 4
# Slice metadata per Commit: one flush of thousands of small writes is one log entry,
# but never one so large that it strains the log or the message limit.
MAX_COMMIT_BYTES = 4 << 20
# Pieces of one chunk at most this far apart are read in one call: checksums cover
# 64 KiB anyway, so the gap costs a server little and saves a round trip per piece.
READ_MERGE_GAP = 64 << 10


class MetaForData(Protocol):
    """What chunk I/O needs from the metadata client; dfs.client.meta.MetaClient has
    exactly these methods. Each raises OSError(errno) on an errno reply and rides out
    leader changes itself."""

    async def ring(self, known_epoch: int = 0) -> common_pb2.Ring:
        """The current ring (GetRing)."""
        ...

    async def alloc_chunk_ids(self, count: int) -> tuple[int, int]:
        """(first, count) of a new range of chunk ids owned by the session."""
        ...

    async def commit(
        self,
        caller: common_pb2.Caller,
        ino: int,
        updates: list[meta_pb2.BlockUpdate],
        end: int,
    ) -> common_pb2.Attr:
        """Commit slices (Commit); the attributes after it."""
        ...

    async def block_maps(
        self, caller: common_pb2.Caller, ino: int, first_block: int = 0, count: int = 0
    ) -> meta_pb2.GetBlockMapReply:
        """Block maps with slices and the file size (GetBlockMap; count 0 = to the end)."""
        ...


if TYPE_CHECKING:
    from dfs.client.meta import MetaClient

    def _the_metadata_client_fits(client: MetaClient) -> MetaForData:
        return client  # mypy proves MetaClient provides MetaForData


class ChunkIds:
    """Chunk ids from the session's allocated ranges, fetched a batch at a time."""

    def __init__(self, alloc: Callable[[int], Awaitable[tuple[int, int]]],
                 batch: int = ID_BATCH) -> None:
        self._alloc = alloc
        self._batch = batch
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def take(self) -> int:
        async with self._lock:
            if self._next >= self._end:
                first, count = await self._alloc(self._batch)
                if count <= 0:
                    raise OSError(errno.EIO, "the metadata service allocated no chunk ids")
                self._next, self._end = first, first + count
            chunk_id = self._next
            self._next += 1
            return chunk_id

    def forget(self) -> None:
        """Drop the rest of the range (after the session that owned it expired)."""
        self._next = self._end = 0


@dataclass(frozen=True)
class WriteResult:
    """A committed write: the attributes after it and the chunks it wrote."""

    attr: common_pb2.Attr | None
    chunks: tuple[StoredChunk, ...]

    @property
    def under_replicated(self) -> int:
        return sum(chunk.under_replicated for chunk in self.chunks)


@dataclass(frozen=True)
class Staged:
    """Chunks uploaded but not committed, and the block updates that will commit them."""

    updates: tuple[meta_pb2.BlockUpdate, ...]
    chunks: tuple[StoredChunk, ...]


@dataclass
class BlockMaps:
    """Slices of some blocks of a file, and its size when they were read."""

    size: int
    by_block: Mapping[int, common_pb2.BlockMap] = field(default_factory=dict)


@dataclass(frozen=True)
class _BlockPart:
    block: int
    offset_in_block: int
    data: bytes


class FileData:
    """Reads and writes of file bytes for one client (one metadata session)."""

    def __init__(
        self,
        meta: MetaForData,
        secret: ClusterSecret | None,
        chain: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
        cache_bytes: int = ClientTuning.block_cache_bytes,
        max_slices: int = ClientTuning.max_slices,
        hedge_reads: bool = bool(ClientTuning.hedge_reads),
    ) -> None:
        self.meta = meta
        self.rings = RingSource(meta.ring)
        self.channels = DataChannels(secret, call_timeout_s)
        self.chunks = ChunkIO(self.rings, self.channels, chain=chain, hedge=hedge_reads)
        self.ids = ChunkIds(meta.alloc_chunk_ids)
        self._parallel = asyncio.Semaphore(MAX_PARALLEL_CHUNKS)
        self.cache = ChunkCache(cache_bytes)
        self.compactor = Compactor(self, max_slices)

    async def close(self) -> None:
        await self.compactor.close()
        await self.channels.close()

    # -- writing ---------------------------------------------------------------------

    async def write(
        self,
        caller: common_pb2.Caller,
        ino: int,
        offset: int,
        data: bytes,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> WriteResult:
        """Write `data` at `offset`: one new chunk per block touched, then one commit.
        Returns only when every chunk is durable and the commit is chosen."""
        return await self.write_extents(caller, ino, [(offset, data)], block_size)

    async def write_extents(
        self,
        caller: common_pb2.Caller,
        ino: int,
        extents: Sequence[tuple[int, bytes]],
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> WriteResult:
        """Write many (offset, data) extents as one: the pieces that fall in one block
        are packed into ONE new chunk (a slice per piece), every chunk is uploaded
        (MAX_PARALLEL_CHUNKS at a time), then one commit carries every block's slices
        (a few, block-aligned, if the slices exceed MAX_COMMIT_BYTES). Where extents
        overlap, later ones win. Returns only when every chunk is durable and every
        commit is chosen."""
        if not any(data for _, data in extents):
            return WriteResult(None, ())
        try:
            return await self._write_once(caller, ino, extents, block_size)
        except OSError as err:
            if not self.session_expired(err, ino):
                raise
        return await self._write_once(caller, ino, extents, block_size)

    def session_expired(self, err: OSError, ino: int) -> bool:
        """Whether a commit failed because the session that owned its chunk ids expired
        (ESTALE). The metadata client has opened a new one and the commit changed
        nothing: the caller uploads again with ids of the new session (the old chunks
        are orphans for the sweep)."""
        if err.errno != errno.ESTALE:
            return False
        log.warning("write to inode %d: %s; writing again in the new session", ino, err)
        self.ids.forget()
        return True

    async def _write_once(
        self,
        caller: common_pb2.Caller,
        ino: int,
        extents: Sequence[tuple[int, bytes]],
        block_size: int,
    ) -> WriteResult:
        staged = await self.upload(extents, block_size)
        return await self.commit_staged(caller, ino, [staged], block_size)

    async def upload(self, extents: Sequence[tuple[int, bytes]], block_size: int) -> Staged:
        """Store the extents as chunks (one per block touched, MAX_PARALLEL_CHUNKS at a
        time) without committing them: the slices a later commit_staged makes visible."""
        by_block = _pack(extents, block_size)
        blocks = sorted(by_block)
        stored = await asyncio.gather(
            *(self._store(b"".join(piece.data for piece in by_block[block])) for block in blocks)
        )
        updates = [
            meta_pb2.BlockUpdate(block=block, slices=_slices(by_block[block], chunk))
            for block, chunk in zip(blocks, stored, strict=True)
        ]
        return Staged(tuple(updates), tuple(stored))

    async def commit_staged(
        self, caller: common_pb2.Caller, ino: int, staged: Sequence[Staged], block_size: int
    ) -> WriteResult:
        """Commit uploads in order (a later one's slices land after, and win over, an
        earlier one's), in as few commits as MAX_COMMIT_BYTES allows. ESTALE when the
        session that owned their chunk ids expired: upload them again."""
        updates = [update for one in staged for update in one.updates]
        attr = None
        for batch in _commit_batches(updates):
            attr = await self.meta.commit(caller, ino, batch, _end_of(batch, block_size))
            for update in batch:
                self.compactor.added(caller, ino, update.block, len(update.slices), block_size)
        return WriteResult(attr, tuple(chunk for one in staged for chunk in one.chunks))

    async def write_chunk(self, data: bytes) -> StoredChunk:
        """Store one new chunk (no commit): for compaction and tools."""
        return await self._store(data)

    async def _store(self, data: bytes) -> StoredChunk:
        async with self._parallel:
            chunk_id = await self.ids.take()
            stored = await self.chunks.write_chunk(chunk_id, data)
        self.cache.keep(chunk_id, 0, data)  # a write is often read back soon
        return stored

    # -- reading ---------------------------------------------------------------------

    async def block_maps(
        self, caller: common_pb2.Caller, ino: int, offset: int, length: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> BlockMaps:
        """The block maps covering [offset, offset + length) and the file's size."""
        blocks = _blocks_of(offset, length, block_size)
        reply = await self.meta.block_maps(caller, ino, blocks.start, len(blocks))
        return BlockMaps(reply.size, {block_map.block: block_map for block_map in reply.blocks})

    async def read(
        self,
        caller: common_pb2.Caller,
        ino: int,
        offset: int,
        length: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        maps: BlockMaps | None = None,
        cached: bool = True,
    ) -> bytes:
        """Up to `length` bytes at `offset` (fewer past the end of the file). `maps`
        (from open) saves a GetBlockMap; a chunk missing everywhere refetches the read's
        blocks once, and `maps` keeps what was refetched. `cached`: through the chunk
        cache (False for O_DIRECT: neither served nor kept)."""
        if maps is None:
            maps = await self.block_maps(caller, ino, offset, length, block_size)
        self._count_slices(ino, maps, offset, length, block_size)
        try:
            return await self._assemble(maps, offset, length, block_size, cached)
        except ChunkMissing as missing:
            log.info("%s; refetching the block map of inode %d", missing, ino)
        fresh = await self.block_maps(caller, ino, offset, length, block_size)
        # A compaction (here or on another mount) replaced chunks the caller's maps
        # still name: they learn the fresh blocks, so the next read there hits.
        fetched = _blocks_of(offset, length, block_size)
        maps.by_block = {
            **{b: m for b, m in maps.by_block.items() if b not in fetched}, **fresh.by_block
        }
        try:
            return await self._assemble(fresh, offset, length, block_size, cached)
        except ChunkMissing as missing:
            raise OSError(errno.EIO, str(missing)) from missing

    def _count_slices(self, ino: int, maps: BlockMaps, offset: int, length: int,
                      block_size: int) -> None:
        """Tell the compactor how many slices the blocks of a read hold."""
        for block in _blocks_of(offset, length, block_size):
            block_map = maps.by_block.get(block)
            if block_map is not None:
                self.compactor.saw(ino, block, len(block_map.slices))

    async def read_from(self, maps: BlockMaps, offset: int, length: int,
                        block_size: int) -> bytes:
        """[offset, offset + length) as `maps` describe it, through the chunk cache
        (compaction reads a block as of one map this way)."""
        return await self._assemble(maps, offset, length, block_size, cached=True)

    async def prefetch(self, maps: BlockMaps, offset: int, length: int, block_size: int) -> None:
        """Read [offset, offset + length) into the chunk cache (read-ahead); a chunk
        that cannot be read now is left for the real read to report."""
        try:
            await self._assemble(maps, offset, length, block_size, cached=True)
        except OSError as err:
            log.debug("read-ahead at %d: %s", offset, err)

    async def _assemble(
        self, maps: BlockMaps, offset: int, length: int, block_size: int, cached: bool
    ) -> bytes:
        end = min(offset + length, maps.size)
        if end <= offset:
            return b""
        result = bytearray(end - offset)  # holes stay zeros
        wants: list[_Want] = []
        for block in range(offset // block_size, -(-end // block_size)):
            block_start = block * block_size
            lo = max(offset, block_start) - block_start
            hi = min(end, block_start + block_size) - block_start
            block_map = maps.by_block.get(block)
            slices = block_map.slices if block_map is not None else ()
            for piece in pieces_of(slices, lo, hi):
                if piece.chunk_id is not None:
                    wants.append(_Want(piece.chunk_id, piece.chunk_offset,
                                       piece.end - piece.start,
                                       block_start + piece.start - offset))
        await asyncio.gather(*(self._read_run(result, run, cached) for run in _runs(wants)))
        return bytes(result)

    async def _read_run(self, result: bytearray, run: list[_Want], cached: bool) -> None:
        """One chunk read covering every want of the run, scattered into `result`."""
        start = run[0].chunk_offset
        stop = max(want.chunk_offset + want.length for want in run)
        if cached:
            data = await self.cache.read(run[0].chunk_id, start, stop - start, self._read_chunk)
        else:
            data = await self._read_chunk(run[0].chunk_id, start, stop - start)
        view = memoryview(data)
        for want in run:
            begin = want.chunk_offset - start
            result[want.at : want.at + want.length] = view[begin : begin + want.length]


    async def _read_chunk(self, chunk_id: int, offset: int, length: int) -> bytes:
        async with self._parallel:
            return await self.chunks.read_chunk(chunk_id, offset, length)


def _blocks_of(offset: int, length: int, block_size: int) -> range:
    """The blocks [offset, offset + length) touches; at least the one at offset."""
    first = offset // block_size
    return range(first, first + max(1, -(-(offset + length) // block_size) - first))


@dataclass(frozen=True, slots=True)
class _Want:
    """Bytes a read needs from a chunk, and where they go in the result."""

    chunk_id: int
    chunk_offset: int
    length: int
    at: int


def _runs(wants: list[_Want]) -> list[list[_Want]]:
    """The wants grouped into reads: wants of one chunk no more than READ_MERGE_GAP
    apart share one read. A block rewritten by many small writes alternates between
    a few chunks a piece at a time; this reads each chunk once instead of per piece."""
    runs: list[list[_Want]] = []
    run_end = 0
    for want in sorted(wants, key=lambda w: (w.chunk_id, w.chunk_offset)):
        joins = (
            runs
            and runs[-1][0].chunk_id == want.chunk_id
            and want.chunk_offset <= run_end + READ_MERGE_GAP
        )
        if joins:
            runs[-1].append(want)
            run_end = max(run_end, want.chunk_offset + want.length)
        else:
            runs.append([want])
            run_end = want.chunk_offset + want.length
    return runs


def _pack(extents: Sequence[tuple[int, bytes]], block_size: int) -> dict[int, list[_BlockPart]]:
    """The pieces of the extents grouped by block, each block's in the extents' order
    (so a later extent's slice lands after, and wins over, an earlier one's)."""
    by_block: dict[int, list[_BlockPart]] = {}
    for offset, data in extents:
        for part in _split(offset, data, block_size):
            by_block.setdefault(part.block, []).append(part)
    return by_block


def _slices(parts: list[_BlockPart], chunk: StoredChunk) -> list[common_pb2.Slice]:
    """One slice per piece, pointing at where the piece sits in the block's packed chunk."""
    slices = []
    in_chunk = 0
    for part in parts:
        slices.append(common_pb2.Slice(
            offset=part.offset_in_block, length=len(part.data), chunk_id=chunk.chunk_id,
            offset_in_chunk=in_chunk, epoch=chunk.epoch,
        ))
        in_chunk += len(part.data)
    return slices


def _commit_batches(updates: list[meta_pb2.BlockUpdate]) -> list[list[meta_pb2.BlockUpdate]]:
    """The updates in order, cut into commits of at most MAX_COMMIT_BYTES of slices (a
    block's slices always travel together, so one commit may exceed it alone)."""
    batches: list[list[meta_pb2.BlockUpdate]] = [[]]
    size = 0
    for update in updates:
        update_size = update.ByteSize()
        if batches[-1] and size + update_size > MAX_COMMIT_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(update)
        size += update_size
    return batches


def _end_of(updates: list[meta_pb2.BlockUpdate], block_size: int) -> int:
    """The file offset just past the last byte the updates write."""
    return max(
        update.block * block_size + piece.offset + piece.length
        for update in updates
        for piece in update.slices
    )


def _split(offset: int, data: bytes, block_size: int) -> list[_BlockPart]:
    """The pieces of a write, one per block it touches."""
    parts: list[_BlockPart] = []
    view = memoryview(data)
    position = offset
    while view:
        block, offset_in_block = divmod(position, block_size)
        take = min(block_size - offset_in_block, len(view))
        parts.append(_BlockPart(block, offset_in_block, bytes(view[:take])))
        view = view[take:]
        position += take
    return parts
