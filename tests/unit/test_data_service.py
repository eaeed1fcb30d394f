"""The Data service over real gRPC and real chunk stores, in-process: uploads and ranged
reads, STALE_EPOCH, CORRUPT, NO_SPACE (capacity and ENOSPC), chain forwarding,
listing, presence, deletes, validation and the secret check."""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from dfs.auth import aio_channel, new_secret
from dfs.client.replicas import DataChannels, read_copy, upload_pieces, write_copy
from dfs.data.checksum import BLOCK_SIZE, ChunkHeader, whole_checksum
from dfs.data.service import BUFFERED_READ_BYTES
from dfs.data.store import ChunkStore, CrashSimulatingFileOps
from dfs.rpc import data_pb2, data_pb2_grpc
from tests.support.data_cluster import LocalDataServer, start_local_data_server

T = TypeVar("T")
OK = data_pb2.CHUNK_STATUS_OK


def pattern(length: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(length)


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def flip_byte(store: ChunkStore, chunk_id: int, offset_in_chunk: int) -> None:
    path = store.path_of(chunk_id)
    length = store.stat(chunk_id).length
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(os.path.getsize(path) - length + offset_in_chunk)
        original = chunk_file.read(1)
        chunk_file.seek(-1, os.SEEK_CUR)
        chunk_file.write(bytes([original[0] ^ 0x01]))


async def upload(
    channels: DataChannels, server: LocalDataServer, chunk_id: int, data: bytes,
    epoch: int = 1, forward_to: Sequence[str] = (),
) -> data_pb2.WriteChunkReply:
    reply = await write_copy(
        channels, server.addr,
        upload_pieces(chunk_id, epoch, data, whole_checksum(data), forward_to),
    )
    assert not isinstance(reply, grpc.aio.AioRpcError), reply
    return reply


def test_upload_then_ranged_reads_return_the_exact_bytes(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            data = pattern(3 * 1024 * 1024 + 12345)
            reply = await upload(channels, server, 42, data)
            assert reply.status == OK and list(reply.durable_at) == [server.addr]
            assert server.store.read(42) == data
            for offset, length in [(0, len(data)), (1, 1), (BLOCK_SIZE - 3, 7),
                                   (1024 * 1024 - 1, 2 * 1024 * 1024 + 2), (len(data) - 5, 5)]:
                outcome = await read_copy(channels, server.addr, 42, offset, length)
                assert outcome.data == data[offset : offset + length], (offset, length)
            # A whole read arrives in several verified pieces with their offsets.
            stub = channels.stub(server.addr)
            replies = [r async for r in stub.ReadChunk(data_pb2.ReadChunkRequest(chunk_id=42))]
            assert len(replies) == 4
            assert [r.offset for r in replies] == [0, 1 << 20, 2 << 20, 3 << 20]
            assert all(r.chunk_length == len(data) for r in replies)
            assert b"".join(r.data for r in replies) == data
            # Empty chunks exist and read as empty, with their length.
            assert (await upload(channels, server, 43, b"")).status == OK
            empty = [r async for r in stub.ReadChunk(data_pb2.ReadChunkRequest(chunk_id=43))]
            assert [(r.status, r.data, r.chunk_length) for r in empty] == [(OK, b"", 0)]
            missing = [r async for r in stub.ReadChunk(data_pb2.ReadChunkRequest(chunk_id=44))]
            assert [r.status for r in missing] == [data_pb2.CHUNK_STATUS_NOT_FOUND]
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                _ = [r async for r in stub.ReadChunk(
                    data_pb2.ReadChunkRequest(chunk_id=42, offset=len(data), length=1))]
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_older_epoch_is_refused_newer_epoch_is_heard(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            server.ring.hear(5)
            stale = await upload(channels, server, 1, b"old placement", epoch=4)
            assert stale.status == data_pb2.CHUNK_STATUS_STALE_EPOCH and stale.epoch == 5
            assert not server.store.has(1)
            assert (await upload(channels, server, 1, b"current", epoch=5)).status == OK
            assert (await upload(channels, server, 2, b"newer", epoch=7)).status == OK
            assert server.ring.epoch == 7 and server.ring.behind.is_set()
            assert (await upload(channels, server, 3, b"x", epoch=6)).status == (
                data_pb2.CHUNK_STATUS_STALE_EPOCH
            )
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_flipped_byte_reads_corrupt_and_marks_the_copy_for_repair(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            data = pattern(5 * BLOCK_SIZE)
            await upload(channels, server, 9, data)
            flip_byte(server.store, 9, 3 * BLOCK_SIZE + 17)
            # Blocks before the bad one still read; a range touching it does not.
            assert (await read_copy(channels, server.addr, 9, 0, BLOCK_SIZE)).data == (
                data[:BLOCK_SIZE])
            bad = await read_copy(channels, server.addr, 9, 0, len(data))
            assert bad.data is None and bad.status == data_pb2.CHUNK_STATUS_CORRUPT
            assert server.store.repair_queue() == [9]
            stub = channels.stub(server.addr)
            verified = await stub.HasChunks(data_pb2.HasChunksRequest(chunk_ids=[9, 10],
                                                                      verify=True))
            assert list(verified.present) == [False, False]
            held = await stub.HasChunks(data_pb2.HasChunksRequest(chunk_ids=[9, 10]))
            assert list(held.present) == [True, False]  # corrupt, but still held here
            # A good copy uploaded again repairs it.
            assert (await upload(channels, server, 9, data)).status == OK
            assert (await read_copy(channels, server.addr, 9, 0, len(data))).data == data
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_capacity_refuses_with_no_space_and_harms_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        chunk = pattern(256 * 1024)
        per_chunk = len(chunk) + ChunkHeader.size_for(len(chunk))
        server = await start_local_data_server(1, tmp_path / "d1", capacity=3 * per_chunk)
        channels = DataChannels(None)
        try:
            for chunk_id in (1, 2, 3):
                assert (await upload(channels, server, chunk_id, chunk)).status == OK
            full = await upload(channels, server, 4, chunk)
            assert full.status == data_pb2.CHUNK_STATUS_NO_SPACE
            assert server.store.chunk_count == 3 and not server.store.has(4)
            assert os.listdir(tmp_path / "d1" / "tmp") == []
            for chunk_id in (1, 2, 3):
                assert server.store.read(chunk_id) == chunk
            assert server.load.reserved_bytes == 0
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_disk_full_mid_upload_is_no_space_and_leaves_no_temp_file(tmp_path: Path) -> None:
    async def body() -> None:
        ops = CrashSimulatingFileOps()
        store = ChunkStore(tmp_path / "d1", file_ops=ops)
        server = await start_local_data_server(1, tmp_path / "d1", store=store)
        channels = DataChannels(None)
        try:
            earlier = pattern(100_000, seed=1)
            assert (await upload(channels, server, 1, earlier)).status == OK
            ops.crash_before("fsync", OSError(errno.ENOSPC, "No space left on device"))
            full = await upload(channels, server, 2, pattern(100_000, seed=2))
            assert full.status == data_pb2.CHUNK_STATUS_NO_SPACE
            assert not store.has(2)
            assert os.listdir(tmp_path / "d1" / "tmp") == []
            assert store.read(1) == earlier
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_chain_forwarding_stores_every_copy_and_reports_them(tmp_path: Path) -> None:
    async def body() -> None:
        servers = [await start_local_data_server(i, tmp_path / f"d{i}") for i in (1, 2, 3)]
        channels = DataChannels(None)
        try:
            data = pattern(2 * 1024 * 1024 + 1)
            reply = await upload(channels, servers[0], 77, data,
                                 forward_to=[servers[1].addr, servers[2].addr])
            assert reply.status == OK
            assert list(reply.durable_at) == [s.addr for s in servers]
            assert all(s.store.read(77) == data for s in servers)
            # A dead hop shortens the list; the copies before it stand.
            await servers[2].stop()
            reply = await upload(channels, servers[0], 78, data,
                                 forward_to=[servers[1].addr, servers[2].addr])
            assert reply.status == OK
            assert list(reply.durable_at) == [servers[0].addr, servers[1].addr]
            assert servers[1].store.read(78) == data
        finally:
            await channels.close()
            for server in servers:
                await server.stop()

    run(body)


def test_list_pages_delete_and_has(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            ids = [3, 10, 11, 500, 2**64 - 1]
            for chunk_id in ids:
                await upload(channels, server, chunk_id, pattern(10, chunk_id % 1000))
            stub = channels.stub(server.addr)
            seen: list[int] = []
            start = 0
            while True:
                page = await stub.ListChunks(data_pb2.ListChunksRequest(start=start, limit=2))
                seen += [c.chunk_id for c in page.chunks]
                assert all(c.length == 10 and c.mtime_ns > 0 for c in page.chunks)
                if page.next == 0:
                    break
                start = page.next
            assert seen == ids
            has = await stub.HasChunks(data_pb2.HasChunksRequest(chunk_ids=[10, 12, 500]))
            assert list(has.present) == [True, False, True]
            deleted = await stub.DeleteChunk(data_pb2.DeleteChunkRequest(chunk_id=10))
            again = await stub.DeleteChunk(data_pb2.DeleteChunkRequest(chunk_id=10))
            assert (deleted.status, again.status) == (OK, data_pb2.CHUNK_STATUS_NOT_FOUND)
            assert not server.store.has(10)
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_bad_uploads_are_refused_with_invalid_argument_and_store_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        stub = channels.stub(server.addr)

        async def send(*pieces: data_pb2.WriteChunkRequest) -> grpc.StatusCode:
            async def stream() -> AsyncIterator[data_pb2.WriteChunkRequest]:
                for piece in pieces:
                    yield piece

            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.WriteChunk(stream())
            return raised.value.code()

        try:
            invalid = grpc.StatusCode.INVALID_ARGUMENT
            assert await send() == invalid
            assert await send(data_pb2.WriteChunkRequest(chunk_id=1, length=2**40)) == invalid
            assert await send(data_pb2.WriteChunkRequest(chunk_id=1, length=4, data=b"abc"),
                              data_pb2.WriteChunkRequest(checksum=1)) == invalid
            assert await send(data_pb2.WriteChunkRequest(chunk_id=1, length=3, data=b"abc",
                                                         checksum=12345)) == invalid
            assert await send(data_pb2.WriteChunkRequest(chunk_id=1, length=3, data=b"abcd")
                              ) == invalid
            assert server.store.chunk_count == 0
            assert os.listdir(tmp_path / "d1" / "tmp") == []
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_calls_without_the_cluster_secret_are_refused(tmp_path: Path) -> None:
    async def body() -> None:
        secret = new_secret()
        server = await start_local_data_server(1, tmp_path / "d1", secret=secret)
        try:
            async with aio_channel(server.addr, None) as bare:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await data_pb2_grpc.DataStub(bare).HasChunks(
                        data_pb2.HasChunksRequest(chunk_ids=[1]))
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            channels = DataChannels(secret)
            assert (await upload(channels, server, 5, b"with the secret")).status == OK
            await channels.close()
        finally:
            await server.stop()

    run(body)


def test_ranges_past_the_buffered_size_stream_and_stop_at_a_bad_block(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            data = pattern(BUFFERED_READ_BYTES + 3 * BLOCK_SIZE + 1)
            await upload(channels, server, 5, data)
            stub = channels.stub(server.addr)
            replies = [r async for r in stub.ReadChunk(data_pb2.ReadChunkRequest(chunk_id=5))]
            assert all(r.status == OK for r in replies) and len(replies) == 9
            assert b"".join(r.data for r in replies) == data
            flip_byte(server.store, 5, 6 * 1024 * 1024 + 5)
            replies = [r async for r in stub.ReadChunk(data_pb2.ReadChunkRequest(chunk_id=5))]
            # Verified pieces before the bad block arrive; the stream ends with CORRUPT.
            assert [r.status for r in replies] == [OK] * 6 + [data_pb2.CHUNK_STATUS_CORRUPT]
            assert b"".join(r.data for r in replies[:6]) == data[: 6 * 1024 * 1024]
            assert server.store.repair_queue() == [5]
        finally:
            await channels.close()
            await server.stop()

    run(body)


def test_an_upload_abandoned_midway_leaves_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        server = await start_local_data_server(1, tmp_path / "d1")
        channels = DataChannels(None)
        try:
            data = pattern(3 * 1024 * 1024)
            pieces = upload_pieces(11, 1, data, whole_checksum(data))
            first_sent = asyncio.Event()

            async def stream() -> AsyncIterator[data_pb2.WriteChunkRequest]:
                yield pieces[0]
                first_sent.set()
                await asyncio.sleep(30)  # the writer goes away before the rest
                for piece in pieces[1:]:
                    yield piece

            call = channels.stub(server.addr).WriteChunk(stream())
            await first_sent.wait()
            await asyncio.sleep(0.2)
            call.cancel()
            for _ in range(100):
                if server.load.writes == 0:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            assert server.load.writes == 0 and server.load.reserved_bytes == 0
            assert not server.store.has(11)
            assert os.listdir(tmp_path / "d1" / "tmp") == []
        finally:
            await channels.close()
            await server.stop()

    run(body)
