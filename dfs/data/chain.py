"""Chain replication: a data server passing an upload on to the next replica while it
stores its own copy.

Owns the downstream WriteChunk stream and the peer channels it runs on. It never
decides placement (the writer names the chain in forward_to) and never fails the
local copy: a broken downstream only shortens the list of durable addresses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import grpc
import grpc.aio

from dfs.channels import DataStubPool
from dfs.rpc import data_pb2

log = logging.getLogger(__name__)

# A downstream hop stores 64 MiB at most; far more than this means it is stuck.
DOWNSTREAM_TIMEOUT_S = 60.0
_END = None


class PeerChannels(DataStubPool):
    """A data server's channels to its peers (one per address)."""


class Downstream:
    """The upload streamed on to forward_to[0], which forwards to the rest."""

    def __init__(self, peers: PeerChannels, first: data_pb2.WriteChunkRequest) -> None:
        chain: Sequence[str] = first.forward_to
        self.addr = chain[0]
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        header = data_pb2.WriteChunkRequest(
            chunk_id=first.chunk_id,
            length=first.length,
            epoch=first.epoch,
            forward_to=list(chain[1:]),
        )
        self._checksum = 0
        stub = peers.stub(self.addr)
        self._call = asyncio.ensure_future(
            stub.WriteChunk(self._pieces(header), timeout=DOWNSTREAM_TIMEOUT_S)
        )

    async def _pieces(
        self, header: data_pb2.WriteChunkRequest
    ) -> AsyncIterator[data_pb2.WriteChunkRequest]:
        yield header
        while (piece := await self._queue.get()) is not _END:
            yield data_pb2.WriteChunkRequest(data=piece)
        yield data_pb2.WriteChunkRequest(checksum=self._checksum)

    def send(self, piece: bytes) -> None:
        if not self._call.done():
            self._queue.put_nowait(piece)

    def finish(self, checksum: int) -> None:
        self._checksum = checksum
        self._queue.put_nowait(_END)

    def cancel(self) -> None:
        self._call.cancel()

    async def durable_at(self) -> list[str]:
        """Addresses downstream that confirmed a durable copy; [] when the hop failed."""
        if self._call.cancelled():
            return []
        try:
            reply: data_pb2.WriteChunkReply = await self._call
        except grpc.aio.AioRpcError as err:
            log.warning("forwarding to %s failed: %s", self.addr, err)
            return []
        if reply.status != data_pb2.CHUNK_STATUS_OK:
            log.warning(
                "forwarding to %s: %s %s",
                self.addr,
                data_pb2.ChunkStatus.Name(reply.status),
                reply.error,
            )
            return []
        return list(reply.durable_at)
