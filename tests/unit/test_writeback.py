"""Write-back coalescing: a handle's buffer holds sorted, disjoint extents (later bytes
win), and FileData.write_extents turns a whole buffer into one chunk per block touched
and one commit. Checked against a bytearray model, with in-process data servers and the
stand-in metadata service counting chunks and commits; the handle's side (one call per
flush, a failed upload reported and its bytes kept) with a stand-in FileData."""

from __future__ import annotations

import asyncio
import errno
import itertools
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from dfs.client import data as data_module
from dfs.client.data import FileData, Staged
from dfs.client.fs import FsClient, OpenFile
from dfs.client.tuning import ClientTuning
from dfs.client.writebuffer import Extent, merge_into
from dfs.rpc import common_pb2, meta_pb2
from tests.support.data_cluster import (
    FakeMeta,
    LocalDataServer,
    ring_of_servers,
    start_local_data_servers,
)

T = TypeVar("T")
CALLER = common_pb2.Caller(uid=0, gid=0)
BLOCK = 64 * 1024  # small blocks, so a few hundred KiB hold several
FILE_SIZE = 8 * BLOCK


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(_call(body))


async def _call(body: Callable[[], Awaitable[T]]) -> T:
    return await body()


def lay(model: bytearray, offset: int, data: bytes) -> None:
    model.extend(bytes(max(0, offset + len(data) - len(model))))
    model[offset : offset + len(data)] = data


def check_extents(extents: list[Extent], model: bytearray, written: bytearray) -> None:
    """Sorted, disjoint, never touching, and byte-exact where something was written."""
    for before, after in itertools.pairwise(extents):
        assert before.end < after.offset
    covered = bytearray(len(written))
    for extent in extents:
        assert extent.data
        assert bytes(extent.data) == bytes(model[extent.offset : extent.end])
        covered[extent.offset : extent.end] = b"\x01" * len(extent.data)
    assert covered == written  # every written byte is buffered, and nothing else


def random_writes(rng: random.Random, count: int, span: int, most: int) -> list[tuple[int, bytes]]:
    writes = []
    for _ in range(count):
        length = rng.randrange(1, most)
        writes.append((rng.randrange(0, span - length), rng.randbytes(length)))
    return writes


@pytest.mark.parametrize("seed", range(6))
def test_buffer_merges_overlapping_and_adjacent_writes(seed: int) -> None:
    rng = random.Random(seed)
    extents: list[Extent] = []
    model, written = bytearray(4096), bytearray(4096)
    buffered = 0
    for _ in range(400):
        length = rng.randrange(0, 64)
        offset = rng.choice([rng.randrange(0, 4096 - 64), *(e.end for e in extents[-1:]),
                             *(max(0, e.offset - length) for e in extents[:1])])
        data = rng.randbytes(length)
        buffered += merge_into(extents, offset, data)
        lay(model, offset, data)
        written[offset : offset + length] = b"\x01" * length
        check_extents(extents, model, written)
        assert buffered == sum(len(e.data) for e in extents)


def test_sequential_writes_grow_one_extent() -> None:
    extents: list[Extent] = []
    for step in range(100):
        merge_into(extents, step * 10, bytes([step]) * 10)
    merge_into(extents, 995, b"x" * 10)  # overlaps the tail and extends it
    assert len(extents) == 1
    assert extents[0].offset == 0 and extents[0].end == 1005


class Counted:
    """Four in-process data servers and a FakeMeta that counts commits and chunks."""

    def __init__(self, servers: list[LocalDataServer], meta: FakeMeta, client: FileData):
        self.servers, self.meta, self.client = servers, meta, client
        self.commits: list[list[meta_pb2.BlockUpdate]] = []
        commit = meta.commit

        async def counting_commit(
            caller: common_pb2.Caller, ino: int, updates: list[meta_pb2.BlockUpdate], end: int
        ) -> common_pb2.Attr:
            self.commits.append(list(updates))
            return await commit(caller, ino, updates, end)

        meta.commit = counting_commit  # type: ignore[method-assign]

    @staticmethod
    async def start(tmp_path: Path) -> Counted:
        servers = await start_local_data_servers(4, tmp_path)
        meta = FakeMeta(ring_of_servers(servers))
        for server in servers:
            server.ring.hear(meta.current_ring.epoch)
        return Counted(servers, meta, FileData(meta, None, call_timeout_s=5.0))

    def chunk_ids(self) -> set[int]:
        return {piece.chunk_id for commit in self.commits for update in commit
                for piece in update.slices}

    async def close(self) -> None:
        await self.client.close()
        for server in self.servers:
            await server.stop()


def count_reads(client: FileData) -> list[int]:
    """The chunk ids of every chunk read `client` makes from now on."""
    reads: list[int] = []
    read_chunk = client.chunks.read_chunk

    async def counting(chunk_id: int, offset: int, length: int) -> bytes:
        reads.append(chunk_id)
        return await read_chunk(chunk_id, offset, length)

    client.chunks.read_chunk = counting  # type: ignore[method-assign]
    return reads


async def buffer_and_flush(
    h: Counted, writes: list[tuple[int, bytes]], model: bytearray
) -> set[int]:
    """Buffers `writes` as a handle does, flushes them with write_extents; the blocks
    they touched."""
    extents: list[Extent] = []
    touched: set[int] = set()
    for offset, data in writes:
        merge_into(extents, offset, data)
        lay(model, offset, data)
        touched.update(range(offset // BLOCK, (offset + len(data) - 1) // BLOCK + 1))
    result = await h.client.write_extents(
        CALLER, 1, [(e.offset, bytes(e.data)) for e in extents], BLOCK
    )
    assert result.attr is not None and result.attr.size == len(model)
    assert all(len(chunk.durable_at) == 3 for chunk in result.chunks)
    return touched


def test_random_small_writes_become_one_chunk_per_block_and_one_commit(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Counted.start(tmp_path)
        try:
            rng = random.Random(11)
            model = bytearray()
            base = rng.randbytes(FILE_SIZE)
            await buffer_and_flush(h, [(0, base)], model)
            h.commits.clear()
            writes = random_writes(rng, 2000, FILE_SIZE + BLOCK // 2, 600)
            touched = await buffer_and_flush(h, writes, model)
            assert len(h.commits) == 1
            assert len(h.chunk_ids()) <= len(touched)
            reads = count_reads(h.client)
            assert await h.client.read(CALLER, 1, 0, len(model) + 10, BLOCK) == bytes(model)
            # Each block alternates between its old chunk and the new one a piece at a
            # time, yet each chunk is read once.
            assert len(reads) <= 2 * (FILE_SIZE // BLOCK + 1)
            for _ in range(5):
                offset, length = rng.randrange(0, len(model)), rng.randrange(1, 3 * BLOCK)
                got = await h.client.read(CALLER, 1, offset, length, BLOCK)
                assert got == bytes(model[offset : offset + length])
        finally:
            await h.close()

    run(body)


def test_overlapping_extents_later_wins(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Counted.start(tmp_path)
        try:
            model = bytearray()
            writes = [(100, b"a" * 300), (200, b"b" * 50), (BLOCK - 10, b"c" * 40), (150, b"d")]
            for offset, data in writes:
                lay(model, offset, data)
            await h.client.write_extents(CALLER, 1, writes, BLOCK)
            assert len(h.commits) == 1 and len(h.chunk_ids()) == 2
            assert await h.client.read(CALLER, 1, 0, len(model), BLOCK) == bytes(model)
        finally:
            await h.close()

    run(body)


def test_large_slice_metadata_splits_into_block_aligned_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_module, "MAX_COMMIT_BYTES", 2000)

    async def body() -> None:
        h = await Counted.start(tmp_path)
        try:
            rng = random.Random(5)
            model = bytearray()
            touched = await buffer_and_flush(h, random_writes(rng, 600, FILE_SIZE, 40), model)
            assert len(h.commits) > 1
            blocks = [update.block for commit in h.commits for update in commit]
            assert blocks == sorted(touched)  # each block's slices in exactly one commit
            assert h.meta.sizes[1] == len(model)
            assert await h.client.read(CALLER, 1, 0, len(model), BLOCK) == bytes(model)
        finally:
            await h.close()

    run(body)


def test_upload_failure_is_raised_and_nothing_is_committed(tmp_path: Path) -> None:
    async def body() -> None:
        h = await Counted.start(tmp_path)
        try:
            for server in h.servers[1:]:
                await server.stop()  # one live server: fewer than R replicas
            with pytest.raises(OSError) as failure:
                await h.client.write_extents(CALLER, 1, [(0, b"x" * 10), (BLOCK, b"y")], BLOCK)
            assert failure.value.errno == errno.EIO
            assert h.commits == []
        finally:
            await h.close()

    run(body)


class FlakyData:
    """A FileData stand-in for FsClient: records each upload and each commit (of the
    uploads' extents, in order) and fails the first `failures` uploads with EIO."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[list[tuple[int, bytes]]] = []
        self.commits: list[list[list[tuple[int, bytes]]]] = []

    async def upload(self, extents: list[tuple[int, bytes]], block_size: int) -> Staged:
        self.calls.append(list(extents))
        index = len(self.calls) - 1
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "too few live data servers")
        # A stand-in update whose block number names this call's extents.
        return Staged((meta_pb2.BlockUpdate(block=index),), ())

    async def commit_staged(self, caller: common_pb2.Caller, ino: int,
                            staged: list[Staged], block_size: int) -> None:
        self.commits.append([self.calls[one.updates[0].block] for one in staged])

    def session_expired(self, err: OSError, ino: int) -> bool:
        return False


class NoMeta:
    """The namespace calls a handle's life makes without a server: holds of open inodes."""

    def hold(self, ino: int) -> None:
        pass

    def release(self, ino: int) -> None:
        pass


def handle_on(data: FlakyData) -> tuple[FsClient, OpenFile]:
    client = FsClient(NoMeta(), data)  # type: ignore[arg-type]  # no namespace calls here
    handle = client._new_handle(CALLER, 7, 0, BLOCK)
    assert handle.fh == 1
    return client, handle.file


def test_handle_flush_sends_its_disjoint_extents_in_one_call() -> None:
    async def body() -> None:
        data = FlakyData(failures=0)
        client, handle = handle_on(data)
        await client.write(1, 100, b"a" * 50)
        await client.write(1, 150, b"b" * 50)  # adjacent: merges
        await client.write(1, 5000, b"c" * 10)
        await client.write(1, 120, b"d" * 10)  # inside the first: later bytes win
        assert client.merge_pending(common_pb2.Attr(ino=7, size=0)).size == 5010
        await client.fsync(1)
        assert data.calls == [[(100, b"a" * 20 + b"d" * 10 + b"a" * 20 + b"b" * 50),
                               (5000, b"c" * 10)]]
        assert not handle.writeback.dirty and handle.writeback.buffered == 0

    run(body)


def test_an_upload_failure_is_reported_and_the_bytes_are_written_again() -> None:
    async def body() -> None:
        data = FlakyData(failures=1)
        client, handle = handle_on(data)
        await client.write(1, 0, b"kept")
        with pytest.raises(OSError) as failure:
            await client.fsync(1)
        assert failure.value.errno == errno.EIO
        assert handle.writeback.end() == 4  # nothing dropped
        with pytest.raises(OSError) as reported:
            await client.write(1, 4, b"more")  # and again at the next call
        assert reported.value.errno == errno.EIO
        await client.fsync(1)
        assert data.calls[-1] == [(0, b"kept")]

    run(body)


def test_full_buffers_upload_in_the_background_and_commit_in_order() -> None:
    """Past upload_bytes the buffer is sealed and uploaded while writes go on; past
    write_buffer_bytes of sealed bytes a write commits them; fsync commits the rest,
    every upload in the order it was sealed."""

    async def body() -> None:
        data = FlakyData(failures=0)
        tuning = ClientTuning(upload_bytes=100, write_buffer_bytes=350)
        client = FsClient(NoMeta(), data, tuning)  # type: ignore[arg-type]
        open_file = client._new_handle(CALLER, 7, 0, BLOCK).file
        for step in range(3):
            await client.write(1, step * 100, bytes([step]) * 100)
        await asyncio.sleep(0.01)
        assert len(data.calls) == 3 and data.commits == []  # uploading, not committed
        assert len(open_file.writeback.sealed) == 3
        await client.write(1, 300, b"\x03" * 100)  # 400 sealed bytes >= 350: commit
        assert data.commits == [data.calls[:4]]
        await client.write(1, 50, b"\x09" * 10)
        await client.fsync(1)
        assert data.commits[-1] == [[(50, b"\x09" * 10)]]
        assert not open_file.writeback.dirty

    run(body)


def test_a_background_upload_failure_is_reported_at_the_next_write() -> None:
    async def body() -> None:
        data = FlakyData(failures=1)
        client = FsClient(NoMeta(), data,  # type: ignore[arg-type]
                          ClientTuning(upload_bytes=100, write_buffer_bytes=1000))
        client._new_handle(CALLER, 7, 0, BLOCK)
        await client.write(1, 0, b"a" * 100)  # sealed; its upload fails
        await asyncio.sleep(0.01)
        with pytest.raises(OSError) as reported:
            await client.write(1, 100, b"b")
        assert reported.value.errno == errno.EIO
        await client.write(1, 100, b"b")
        await client.fsync(1)  # the failed upload's bytes are uploaded again
        assert data.commits == [[[(0, b"a" * 100)], [(100, b"b")]]]

    run(body)
