"""Calls to one data server for one chunk: stream a copy up, stream a byte range down.

Owns the wire shape of uploads and reads and the channels to data servers. It never
chooses replicas and never retries: the caller (dfs.client.chunkio) does both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from dfs.channels import DataStubPool
from dfs.rpc import data_pb2

log = logging.getLogger(__name__)

# 1 MiB pieces: the per-message cost is small against the bytes, and a 4 MiB chunk
# still streams in a few messages that the server writes as they arrive.
WRITE_PIECE_BYTES = 1024 * 1024
# Bounds one upload or read of one copy (at most 64 MiB); a hung server costs this
# much before the client moves on.

OK = data_pb2.CHUNK_STATUS_OK


@dataclass(frozen=True)
class ReadOutcome:
    """Bytes from one copy, or why there are none (a ChunkStatus or a transport error)."""

    data: bytes | None
    status: int = OK
    error: str = ""


class DataChannels(DataStubPool):
    """The client's channels to data servers (one per address)."""


def upload_pieces(
    chunk_id: int, epoch: int, data: bytes, checksum: int, forward_to: Sequence[str] = ()
) -> list[data_pb2.WriteChunkRequest]:
    """The messages of one upload; built once and sent to every replica."""
    view = memoryview(data)
    starts = range(0, len(data), WRITE_PIECE_BYTES) if data else range(1)
    pieces = [
        data_pb2.WriteChunkRequest(data=bytes(view[start : start + WRITE_PIECE_BYTES]))
        for start in starts
    ]
    first, last = pieces[0], pieces[-1]
    first.chunk_id, first.length, first.epoch = chunk_id, len(data), epoch
    first.forward_to.extend(forward_to)
    last.checksum = checksum
    return pieces


async def write_copy(
    channels: DataChannels, addr: str, pieces: Sequence[data_pb2.WriteChunkRequest]
) -> data_pb2.WriteChunkReply | grpc.aio.AioRpcError:
    """Upload one copy; the server's reply, or the transport error."""

    async def stream() -> AsyncIterator[data_pb2.WriteChunkRequest]:
        for piece in pieces:
            yield piece

    try:
        reply: data_pb2.WriteChunkReply = await channels.stub(addr).WriteChunk(
            stream(), timeout=channels.call_timeout_s
        )
    except grpc.aio.AioRpcError as err:
        log.info("upload to %s failed: %s %s", addr, err.code().name, err.details())
        return err
    return reply


async def read_copy(
    channels: DataChannels, addr: str, chunk_id: int, offset: int, length: int
) -> ReadOutcome:
    """Bytes [offset, offset + length) of one copy, every one verified by the server."""
    request = data_pb2.ReadChunkRequest(chunk_id=chunk_id, offset=offset, length=length)
    parts: list[bytes] = []
    try:
        call = channels.stub(addr).ReadChunk(request, timeout=channels.call_timeout_s)
        async for reply in call:
            if reply.status != OK:
                return ReadOutcome(None, reply.status, data_pb2.ChunkStatus.Name(reply.status))
            parts.append(reply.data)
    except grpc.aio.AioRpcError as err:
        log.info("read of %016x from %s failed: %s", chunk_id, addr, err.code().name)
        return ReadOutcome(None, OK, f"{err.code().name}: {err.details()}")
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) != length:
        return ReadOutcome(None, OK, f"got {len(data)} of {length} bytes")
    return ReadOutcome(data)
