"""The client's chunk I/O (dfs.client.data over dfs.client.chunkio) against in-process
data servers with real stores and real gRPC, and a stand-in metadata service: round
trips against a bytearray model, replica fail-over, STALE_EPOCH, a corrupt copy,
NO_SPACE, too few live servers, degraded writes, block-map refetch on NOT_FOUND."""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from dfs.client.chunkcache import ChunkCache
from dfs.client.data import FileData
from dfs.client.slices import Piece, pieces_of
from dfs.placement.members import MemberState
from dfs.placement.ring import Ring
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2
from tests.support.data_cluster import (
    FakeMeta,
    LocalDataServer,
    ring_of_servers,
    start_local_data_servers,
)

T = TypeVar("T")
CALLER = common_pb2.Caller(uid=0, gid=0)
BLOCK = 256 * 1024  # small blocks, so a few hundred KiB cross several


def pattern(length: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(length)


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def holders(servers: list[LocalDataServer], chunk_id: int) -> set[int]:
    return {s.server_id for s in servers if s.store.has(chunk_id)}


def flip_byte(path: str, offset_from_end: int) -> None:
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(os.path.getsize(path) - offset_from_end)
        original = chunk_file.read(1)
        chunk_file.seek(-1, os.SEEK_CUR)
        chunk_file.write(bytes([original[0] ^ 0x40]))


class Harness:
    """Four in-process data servers, a FakeMeta with their ring, a FileData client."""

    def __init__(self, servers: list[LocalDataServer], meta: FakeMeta, client: FileData):
        self.servers, self.meta, self.client = servers, meta, client

    @staticmethod
    async def start(tmp_path: Path, count: int = 4, capacity: int = 0,
                    min_replicas: int = 0, cache_bytes: int = 0) -> Harness:
        """No chunk cache unless asked: most tests here are about what servers answer."""
        servers = await start_local_data_servers(count, tmp_path, capacity=capacity)
        meta = FakeMeta(ring_of_servers(servers, min_replicas=min_replicas))
        for server in servers:
            server.ring.hear(meta.current_ring.epoch)
        client = FileData(meta, None, call_timeout_s=5.0, cache_bytes=cache_bytes)
        return Harness(servers, meta, client)

    def ring(self) -> Ring:
        return Ring(config_from_proto(self.meta.current_ring))

    async def close(self) -> None:
        await self.client.close()
        for server in self.servers:
            await server.stop()


def test_pieces_newest_slice_wins_and_gaps_are_holes() -> None:
    def s(offset: int, length: int, chunk: int, in_chunk: int = 0) -> common_pb2.Slice:
        return common_pb2.Slice(offset=offset, length=length, chunk_id=chunk,
                                offset_in_chunk=in_chunk)

    slices = [s(0, 100, 1), s(50, 20, 2, 5), s(200, 50, 3)]
    assert pieces_of(slices, 0, 300) == [
        Piece(0, 50, 1, 0), Piece(50, 70, 2, 5), Piece(70, 100, 1, 70),
        Piece(100, 200), Piece(200, 250, 3, 0), Piece(250, 300),
    ]
    assert pieces_of(slices, 60, 65) == [Piece(60, 65, 2, 15)]
    assert pieces_of([], 10, 20) == [Piece(10, 20)]
    assert pieces_of(slices, 5, 5) == []


def test_writes_read_back_like_a_bytearray_model(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            rng = random.Random(7)
            model = bytearray()
            for step in range(12):
                offset = rng.randrange(0, 3 * BLOCK)
                data = pattern(rng.randrange(1, 2 * BLOCK), seed=step)
                result = await h.client.write(CALLER, 1, offset, data, BLOCK)
                model.extend(bytes(max(0, offset + len(data) - len(model))))
                model[offset : offset + len(data)] = data
                assert result.attr is not None and result.attr.size == len(model)
                assert result.under_replicated == 0
                for chunk in result.chunks:
                    assert len(chunk.durable_at) == 3 and chunk.epoch == 1
                    assert len(holders(h.servers, chunk.chunk_id)) == 3
            assert await h.client.read(CALLER, 1, 0, len(model) + 100, BLOCK) == bytes(model)
            for _ in range(20):
                offset = rng.randrange(0, len(model))
                length = rng.randrange(1, BLOCK * 2)
                got = await h.client.read(CALLER, 1, offset, length, BLOCK)
                assert got == bytes(model[offset : offset + length])
            # Every committed slice carries the epoch its chunk was placed with.
            slices = [sl for blk in h.meta.blocks[1].values() for sl in blk]
            assert slices and all(sl.epoch == 1 for sl in slices)
        finally:
            await h.close()

    run(body)


def test_reads_fail_over_and_writes_replace_a_dead_target(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            data = pattern(3 * BLOCK + 5)
            first = await h.client.write(CALLER, 1, 0, data, BLOCK)
            # Stop the first home of the first chunk; the ring still says it is up.
            victim_id = h.ring().read_order(first.chunks[0].chunk_id)[0].id
            victim = next(s for s in h.servers if s.server_id == victim_id)
            await victim.stop()
            assert await h.client.read(CALLER, 1, 0, len(data), BLOCK) == data
            # New writes still get three copies, on the live servers.
            later = await h.client.write(CALLER, 2, 0, data, BLOCK)
            for chunk in later.chunks:
                assert not chunk.under_replicated
                assert holders(h.servers, chunk.chunk_id) == {1, 2, 3, 4} - {victim_id}
                assert victim.addr not in chunk.durable_at
            assert await h.client.read(CALLER, 2, 0, len(data), BLOCK) == data
        finally:
            await h.close()

    run(body)


def test_stale_epoch_refreshes_the_ring_and_places_again(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            await h.client.write(CALLER, 1, 0, b"placed at epoch 1", BLOCK)
            # The ring moves on (server 4 drains); the servers hear of it first.
            h.meta.current_ring = ring_of_servers(h.servers, epoch=2,
                                          states={4: MemberState.DRAINING})
            for server in h.servers:
                server.ring.hear(2)
            fetches = h.meta.ring_fetches
            result = await h.client.write(CALLER, 1, 100, pattern(BLOCK), BLOCK)
            assert h.meta.ring_fetches == fetches + 1
            for chunk in result.chunks:
                assert chunk.epoch == 2
                assert holders(h.servers, chunk.chunk_id) == {1, 2, 3}
            assert h.meta.blocks[1][0][-1].epoch == 2
            assert (await h.client.read(CALLER, 1, 0, 17, BLOCK)) == b"placed at epoch 1"
        finally:
            await h.close()

    run(body)


def test_a_corrupt_copy_is_skipped_and_marked(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            data = pattern(BLOCK)
            result = await h.client.write(CALLER, 1, 0, data, BLOCK)
            chunk_id = result.chunks[0].chunk_id
            first = h.ring().read_order(chunk_id)[0]
            bad = next(s for s in h.servers if s.server_id == first.id)
            flip_byte(bad.store.path_of(chunk_id), 1000)
            assert await h.client.read(CALLER, 1, 0, len(data), BLOCK) == data
            assert bad.store.repair_queue() == [chunk_id]
        finally:
            await h.close()

    run(body)


def test_full_data_servers_give_enospc_and_keep_earlier_files(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path, capacity=1024 * 1024)
        try:
            earlier = pattern(BLOCK, seed=1)
            await h.client.write(CALLER, 1, 0, earlier, BLOCK)
            with pytest.raises(OSError) as raised:
                for ino in range(2, 40):
                    await h.client.write(CALLER, ino, 0, pattern(BLOCK, seed=ino), BLOCK)
            assert raised.value.errno == errno.ENOSPC
            assert await h.client.read(CALLER, 1, 0, BLOCK, BLOCK) == earlier
        finally:
            await h.close()

    run(body)


def test_fewer_live_servers_than_r_is_eio_unless_degraded_writes_are_allowed(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        strict = await Harness.start(tmp_path / "strict", count=3)
        degraded = await Harness.start(tmp_path / "degraded", count=3, min_replicas=2)
        try:
            for h in (strict, degraded):
                await h.servers[2].stop()
            with pytest.raises(OSError) as raised:
                await strict.client.write(CALLER, 1, 0, b"needs three copies", BLOCK)
            assert raised.value.errno == errno.EIO
            assert 1 not in strict.meta.blocks  # nothing was committed
            result = await degraded.client.write(CALLER, 1, 0, b"two will do", BLOCK)
            assert result.under_replicated == 1
            assert degraded.client.chunks.under_replicated_writes == 1
            assert await degraded.client.read(CALLER, 1, 0, 11, BLOCK) == b"two will do"
        finally:
            await strict.close()
            await degraded.close()

    run(body)


def test_not_found_everywhere_refetches_the_block_map_once(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            await h.client.write(CALLER, 1, 0, b"version one", BLOCK)
            stale_maps = await h.client.block_maps(CALLER, 1, 0, 11, BLOCK)
            # Compaction replaced the chunk and GC removed the old one everywhere.
            old_id = h.meta.blocks[1][0][0].chunk_id
            await h.client.write(CALLER, 1, 0, b"version two", BLOCK)
            for server in h.servers:
                server.store.delete(old_id)
            fetches = h.meta.map_fetches
            got = await h.client.read(CALLER, 1, 0, 11, BLOCK, maps=stale_maps)
            assert got == b"version two" and h.meta.map_fetches == fetches + 1
            # Gone from the current map too: EIO after the one refetch.
            for server in h.servers:
                server.store.delete(h.meta.blocks[1][0][-1].chunk_id)
            with pytest.raises(OSError) as raised:
                await h.client.read(CALLER, 1, 0, 11, BLOCK)
            assert raised.value.errno == errno.EIO
        finally:
            await h.close()

    run(body)


def test_holes_and_reads_past_the_end(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            await h.client.write(CALLER, 1, 2 * BLOCK + 10, b"tail", BLOCK)
            got = await h.client.read(CALLER, 1, 0, 10 * BLOCK, BLOCK)
            assert got == bytes(2 * BLOCK + 10) + b"tail"
            assert await h.client.read(CALLER, 1, 2 * BLOCK + 14, 100, BLOCK) == b""
            assert (await h.client.write(CALLER, 1, 0, b"", BLOCK)).chunks == ()
        finally:
            await h.close()

    run(body)


def test_a_commit_refused_as_estale_is_written_again_in_the_new_session(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        h = await Harness.start(tmp_path)
        try:
            await h.client.write(CALLER, 1, 0, b"first", BLOCK)
            h.meta.expire_session()
            result = await h.client.write(CALLER, 1, 5, b" second", BLOCK)
            assert h.meta.refused_commits == 1
            assert all(c.chunk_id >= h.meta.session_ids_from for c in result.chunks)
            assert await h.client.read(CALLER, 1, 0, 100, BLOCK) == b"first second"
        finally:
            await h.close()

    run(body)


def test_cached_chunks_are_read_without_data_servers_and_direct_reads_bypass(
    tmp_path: Path,
) -> None:
    """A read through the chunk cache is served with every data server stopped (chunks
    never change, so what it holds is current); an uncached (O_DIRECT) read is not."""

    async def body() -> None:
        h = await Harness.start(tmp_path, cache_bytes=8 * BLOCK)
        try:
            data = pattern(3 * BLOCK + 123, seed=5)
            await h.client.write(CALLER, 1, 0, data, BLOCK)
            h.client.cache = ChunkCache(8 * BLOCK)  # forget what the write kept
            assert await h.client.read(CALLER, 1, 0, len(data), BLOCK) == data
            assert h.client.cache.misses == len(data)
            for server in h.servers:
                await server.stop()
            maps = await h.client.block_maps(CALLER, 1, 0, len(data), BLOCK)
            assert await h.client.read(CALLER, 1, 100, BLOCK, BLOCK, maps) == data[100:BLOCK + 100]
            with pytest.raises(OSError):
                await h.client.read(CALLER, 1, 0, 10, BLOCK, maps, cached=False)
        finally:
            await h.client.close()

    run(body)


def test_chunk_cache_stays_within_its_bound_and_shares_fetches() -> None:
    fetched: list[tuple[int, int, int]] = []

    async def fetch(chunk_id: int, offset: int, length: int) -> bytes:
        fetched.append((chunk_id, offset, length))
        await asyncio.sleep(0.01)
        return bytes([chunk_id % 256]) * length

    async def body() -> None:
        cache = ChunkCache(100_000)
        both = await asyncio.gather(cache.read(1, 0, 50_000, fetch),
                                    cache.read(1, 10_000, 20_000, fetch))
        assert both == [b"\x01" * 50_000, b"\x01" * 20_000]
        assert fetched == [(1, 0, 50_000)]  # the second read joined the first's fetch
        assert await cache.read(1, 40_000, 20_000, fetch) == b"\x01" * 20_000
        assert fetched[-1] == (1, 50_000, 10_000)  # only the part not held
        for chunk_id in range(2, 12):
            assert await cache.read(chunk_id, 0, 30_000, fetch) == bytes([chunk_id]) * 30_000
            assert cache.held <= 100_000
        before = len(fetched)
        assert await cache.read(11, 0, 30_000, fetch) == b"\x0b" * 30_000
        assert len(fetched) == before  # the newest chunk is still held: no fetch
        assert await cache.read(2, 0, 30_000, fetch) == b"\x02" * 30_000
        assert len(fetched) == before + 1  # the oldest was evicted

    run(body)
