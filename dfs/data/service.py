"""The Data gRPC service of a data server: chunk uploads, verified ranged reads,
deletes, listings and presence checks over the local ChunkStore.

Owns the translation between the wire (data.proto) and the store: statuses, the
epoch check, the --capacity check, streaming in pieces. Every store call runs in a
worker thread, so the event loop never waits on the disk. It must never decide
placement: writers name their replicas (and, for a chain, the next hops).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, TypeVar, cast

import grpc

from dfs.data.chain import Downstream, PeerChannels
from dfs.data.checksum import MAX_CHUNK_LENGTH, ChunkHeader
from dfs.data.load import Load
from dfs.data.ringview import RingView
from dfs.data.store import (
    ChunkConflict,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStat,
    ChunkStore,
    ChunkWriter,
    InvalidRange,
    NoSpace,
    UploadMismatch,
)
from dfs.metrics.rpc import CHUNK_BYTES
from dfs.rpc import data_pb2, data_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

# 1 MiB pieces: large enough that per-message cost is small against the bytes,
# small enough that a read starts flowing before the whole chunk is verified.
READ_PIECE_BYTES = 1024 * 1024
# A range up to this size is read and verified in one worker-thread trip (a whole
# default block): fewer thread hand-offs than one per piece, which on a loaded
# 2-core machine cost more than the overlap of disk and network they buy.
BUFFERED_READ_BYTES = 8 * 1024 * 1024
MAX_LIST_LIMIT = 1000
# HasChunks with verify reads every byte of every chunk it is asked about.
MAX_HAS_CHUNKS = 1024
MAX_CHAIN = 8

OK = data_pb2.CHUNK_STATUS_OK
NOT_FOUND = data_pb2.CHUNK_STATUS_NOT_FOUND
STALE_EPOCH = data_pb2.CHUNK_STATUS_STALE_EPOCH
CORRUPT = data_pb2.CHUNK_STATUS_CORRUPT
NO_SPACE = data_pb2.CHUNK_STATUS_NO_SPACE
CONFLICT = data_pb2.CHUNK_STATUS_CONFLICT


class DataService(data_pb2_grpc.DataServicer):
    """Serves one ChunkStore. `self_addr` is what this server reports in durable_at."""

    def __init__(
        self,
        store: ChunkStore,
        ring: RingView,
        self_addr: str,
        load: Load,
        peers: PeerChannels,
    ) -> None:
        self.store = store
        self.ring = ring
        self.self_addr = self_addr
        self.load = load
        self.peers = peers

    # -- WriteChunk ------------------------------------------------------------------

    async def WriteChunk(
        self, request_iterator: AsyncIterator[data_pb2.WriteChunkRequest], context: Any
    ) -> data_pb2.WriteChunkReply:
        with self.load.write():
            first = await anext(request_iterator, None)
            if first is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload")
            assert first is not None
            problem = _header_problem(first)
            if problem:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            if self.ring.is_stale(first.epoch):
                return data_pb2.WriteChunkReply(
                    status=STALE_EPOCH,
                    epoch=self.ring.epoch,
                    error=f"placed with epoch {first.epoch}, ring is at {self.ring.epoch}",
                )
            self.ring.hear(first.epoch)
            file_bytes = first.length + ChunkHeader.size_for(first.length)
            if not self.load.reserve(file_bytes, self.store.used_bytes):
                return data_pb2.WriteChunkReply(status=NO_SPACE, error="past --capacity")
            try:
                reply = await self._upload(first, request_iterator, context)
            finally:
                self.load.release(file_bytes)
            if reply.status == OK:
                CHUNK_BYTES.labels("written").inc(first.length)
            return reply

    async def _upload(
        self,
        first: data_pb2.WriteChunkRequest,
        rest: AsyncIterator[data_pb2.WriteChunkRequest],
        context: Any,
    ) -> data_pb2.WriteChunkReply:
        downstream = Downstream(self.peers, first) if first.forward_to else None
        writer: ChunkWriter | None = None
        disk = _DiskSteps()
        try:
            writer = await disk.run(self.store.begin_write, first.chunk_id, first.length)
            checksum = await self._receive(disk, writer, first, rest, downstream)
            if downstream is not None:
                downstream.finish(checksum)
            await disk.run(writer.commit, checksum or None)
        except NoSpace as err:
            return self._failed(downstream, NO_SPACE, str(err))
        except ChunkConflict as err:
            return self._failed(downstream, CONFLICT, str(err))
        except UploadMismatch as err:
            if downstream is not None:
                downstream.cancel()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except BaseException:
            # The writer vanished, the call was cancelled or the disk failed: drop the
            # temp file once no disk step of this upload is still running in its thread
            # (closing the file under a running pwrite could let a reused descriptor
            # number send those bytes into another upload's file).
            if writer is not None:
                disk.after_last(writer.abort)
            if downstream is not None:
                downstream.cancel()
            raise
        durable_at = [self.self_addr]
        if downstream is not None:
            durable_at += await downstream.durable_at()
        log.debug("stored chunk %016x (%d bytes)", first.chunk_id, first.length)
        return data_pb2.WriteChunkReply(status=OK, epoch=self.ring.epoch, durable_at=durable_at)

    async def _receive(
        self,
        disk: _DiskSteps,
        writer: ChunkWriter,
        first: data_pb2.WriteChunkRequest,
        rest: AsyncIterator[data_pb2.WriteChunkRequest],
        downstream: Downstream | None,
    ) -> int:
        """Write every piece as it arrives (and pass it on); the declared checksum."""
        checksum = first.checksum
        piece = first
        while True:
            if piece.data:
                if downstream is not None:
                    downstream.send(piece.data)
                await disk.run(writer.write, piece.data)
            if piece.checksum:
                checksum = piece.checksum
            next_piece = await anext(rest, None)
            if next_piece is None:
                return checksum
            piece = next_piece

    @staticmethod
    def _failed(
        downstream: Downstream | None, status: int, error: str
    ) -> data_pb2.WriteChunkReply:
        if downstream is not None:
            downstream.cancel()
        log.warning("upload refused: %s", error)
        return data_pb2.WriteChunkReply(status=status, error=error)  # type: ignore[arg-type]

    # -- ReadChunk -------------------------------------------------------------------

    async def ReadChunk(
        self, request: data_pb2.ReadChunkRequest, context: Any
    ) -> AsyncIterator[data_pb2.ReadChunkReply]:
        with self.load.request():
            try:
                stat, end, pieces = await asyncio.to_thread(self._read_small, request)
            except ChunkNotFound:
                yield data_pb2.ReadChunkReply(status=NOT_FOUND)
                return
            except ChunkCorrupt:
                yield data_pb2.ReadChunkReply(status=CORRUPT)
                return
            except InvalidRange as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            CHUNK_BYTES.labels("read").inc(end - request.offset)
            if pieces is None:
                async for reply in self._verified_pieces(stat, request.offset, end):
                    yield reply
                return
            offset = request.offset
            for piece in pieces:
                yield data_pb2.ReadChunkReply(
                    status=OK, offset=offset, data=piece, chunk_length=stat.length
                )
                offset += len(piece)
            if not pieces:  # an empty range still answers, with the chunk's length
                yield data_pb2.ReadChunkReply(status=OK, offset=offset, chunk_length=stat.length)

    def _read_small(
        self, request: data_pb2.ReadChunkRequest
    ) -> tuple[ChunkStat, int, list[bytes] | None]:
        """(stat, end of the range, its verified pieces), all in one worker-thread trip
        when the range is at most BUFFERED_READ_BYTES; pieces None for larger ranges,
        which stream piece by piece instead."""
        stat = self.store.stat(request.chunk_id)
        end = stat.length if request.length == 0 else request.offset + request.length
        if not request.offset <= end <= stat.length:
            raise InvalidRange(
                f"bytes [{request.offset}, {end}) outside chunk of {stat.length} bytes"
            )
        if end - request.offset > BUFFERED_READ_BYTES:
            return stat, end, None
        pieces = self.store.iter_read(
            request.chunk_id, request.offset, end - request.offset, READ_PIECE_BYTES
        )
        return stat, end, list(pieces)

    async def _verified_pieces(
        self, stat: ChunkStat, start: int, end: int
    ) -> AsyncIterator[data_pb2.ReadChunkReply]:
        # iter_read is a generator (its file closes when it is closed); it is driven
        # one piece at a time from worker threads, never two at once.
        pieces = cast(
            Generator[bytes, None, None],
            self.store.iter_read(stat.chunk_id, start, end - start, READ_PIECE_BYTES),
        )
        offset = start
        try:
            while True:
                try:
                    piece = await asyncio.to_thread(_next_or_none, pieces)
                except ChunkNotFound:  # deleted since the stat
                    yield data_pb2.ReadChunkReply(status=NOT_FOUND)
                    return
                except ChunkCorrupt:  # the store has marked it for repair
                    yield data_pb2.ReadChunkReply(status=CORRUPT, offset=offset)
                    return
                if piece is None:
                    break
                yield data_pb2.ReadChunkReply(
                    status=OK, offset=offset, data=piece, chunk_length=stat.length
                )
                offset += len(piece)
        finally:
            pieces.close()
        if offset == start:  # an empty range still answers, with the chunk's length
            yield data_pb2.ReadChunkReply(status=OK, offset=start, chunk_length=stat.length)

    # -- the rest --------------------------------------------------------------------

    async def DeleteChunk(
        self, request: data_pb2.DeleteChunkRequest, context: Any
    ) -> data_pb2.DeleteChunkReply:
        with self.load.request():
            deleted = await asyncio.to_thread(self.store.delete, request.chunk_id)
        return data_pb2.DeleteChunkReply(status=OK if deleted else NOT_FOUND)

    async def ListChunks(
        self, request: data_pb2.ListChunksRequest, context: Any
    ) -> data_pb2.ListChunksReply:
        limit = min(request.limit or MAX_LIST_LIMIT, MAX_LIST_LIMIT)
        with self.load.request():
            ids, stats = await asyncio.to_thread(self._list_page, request.start, limit)
        # A page shorter than asked means the end; stats may be fewer than ids when
        # a corrupt chunk was left out, which must not end the listing early.
        last = ids[-1] if len(ids) == limit else None
        return data_pb2.ListChunksReply(
            chunks=[
                data_pb2.ChunkInfo(
                    chunk_id=s.chunk_id, length=s.length, checksum=s.checksum, mtime_ns=s.mtime_ns
                )
                for s in stats
            ],
            next=0 if last is None or last == 2**64 - 1 else last + 1,
        )

    def _list_page(self, start: int, limit: int) -> tuple[list[int], list[ChunkStat]]:
        ids = self.store.chunk_ids(start, limit)
        stats: list[ChunkStat] = []
        for chunk_id in ids:
            try:
                stats.append(self.store.stat(chunk_id))
            except (ChunkNotFound, ChunkCorrupt):
                continue
        return ids, stats

    async def HasChunks(
        self, request: data_pb2.HasChunksRequest, context: Any
    ) -> data_pb2.HasChunksReply:
        if len(request.chunk_ids) > MAX_HAS_CHUNKS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_HAS_CHUNKS} ids per call"
            )
        check = self.store.verify if request.verify else self.store.has
        with self.load.request():
            present = await asyncio.to_thread(
                lambda: [check(chunk_id) for chunk_id in request.chunk_ids]
            )
        return data_pb2.HasChunksReply(present=present)


class _DiskSteps:
    """One upload's store calls, run one at a time in worker threads. A cancelled
    caller stops waiting, but the thread finishes its step; after_last() runs
    clean-up only then."""

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    async def run(self, step: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(step, *args))
        self._last = future
        # shield: cancelling this call must not mark the step done while its thread runs.
        return await asyncio.shield(future)

    def after_last(self, clean_up: Callable[[], object]) -> None:
        last = self._last
        if last is None or last.done():
            clean_up()
        else:
            last.add_done_callback(lambda done: _retrieve_then(done, clean_up))


def _retrieve_then(done: asyncio.Future[Any], clean_up: Callable[[], object]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.info("upload step failed after its caller left: %s", done.exception())
    clean_up()


def _header_problem(first: data_pb2.WriteChunkRequest) -> str:
    """Why the first piece of an upload is unacceptable ("" when it is fine)."""
    if first.length > MAX_CHUNK_LENGTH:
        return f"length {first.length} exceeds {MAX_CHUNK_LENGTH}"
    if len(first.forward_to) > MAX_CHAIN:
        return f"forward_to names more than {MAX_CHAIN} servers"
    if any(":" not in addr for addr in first.forward_to):
        return "forward_to entries must be host:port"
    return ""


def _next_or_none(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)
