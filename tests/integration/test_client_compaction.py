"""The client's slice compaction and hedged reads on a real cluster (3 `dfs meta` + 4
`dfs data` processes, R = 3), through the client library.

Compaction: a file overwritten in hundreds of small pieces ends with at most K slices
in every block (counted through GetBlockMap) and the same bytes as a local model, while
writes went on during the background compactions; a write that lands between a
compaction's read and its commit is never lost (the commit is refused when it hid a
slice, and lays the merged chunk under it when it did not); two clients compacting
one file as they take turns writing it lose nothing; a compaction leaves mtime as it
was. Hedged reads: with a stopped (SIGSTOP) server first in the read order of several
chunks, every read is answered by another copy, and the counters say which.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Iterator

import pytest

from dfs.auth import init_cluster_dir
from dfs.client.compaction import Compactor
from dfs.client.data import DEFAULT_BLOCK_SIZE, FileData
from dfs.client.meta import MetaClient
from tests.support.data_cluster import (
    POLICY,
    ROOT,
    ROOT_INO,
    DataCluster,
    make_data_cluster,
    run_with_client,
    stop_all_at_once,
)
from tests.support.meta_cluster import make_meta_cluster
from tests.support.procs import ProcessSet

KIB = 1024
K = 8  # the default max_slices
FILE_SIZE = DEFAULT_BLOCK_SIZE + 512 * KIB  # two blocks, the second partly
OVERWRITES = 240


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataCluster]:
    """One cluster for the module: each test works on files of its own."""
    base = tmp_path_factory.mktemp("compaction")
    procs = ProcessSet(base_dir=base)
    secret_file, _ = init_cluster_dir(base / "cluster")
    try:
        meta = make_meta_cluster(procs, secret_file)
        meta.start_all()
        data = make_data_cluster(meta)
        data.start_all()
        yield data
    finally:
        stop_all_at_once(procs)
        procs.cleanup()


async def slice_counts(meta: MetaClient, ino: int) -> dict[int, int]:
    reply = await meta.block_maps(ROOT, ino)
    return {block_map.block: len(block_map.slices) for block_map in reply.blocks}


async def read_all(files: FileData, ino: int, size: int) -> bytes:
    return await files.read(ROOT, ino, 0, size + 1, cached=False)


@pytest.mark.timeout(240)
def test_small_overwrites_end_compacted_with_the_same_bytes(cluster: DataCluster) -> None:

    async def body(meta: MetaClient, files: FileData) -> None:
        rng = random.Random(2101)
        model = bytearray(rng.randbytes(FILE_SIZE))
        ino = (await meta.create(ROOT, ROOT_INO, b"overwritten", 0o644)).ino
        await files.write(ROOT, ino, 0, bytes(model))
        for _ in range(OVERWRITES):  # one commit each: a slice per block touched
            length = rng.randrange(1, 16 * KIB)
            offset = rng.randrange(0, FILE_SIZE - length)
            piece = rng.randbytes(length)
            await files.write(ROOT, ino, offset, piece)
            model[offset : offset + length] = piece
        await files.compactor.settled()

        counts = await slice_counts(meta, ino)
        print(f"\nslices per block after {OVERWRITES} overwrites: {counts}; "
              f"{files.compactor.compacted} compactions, {files.compactor.refused} refused")
        assert files.compactor.compacted >= 2  # one per block at least
        assert set(counts) == {0, 1} and max(counts.values()) <= K
        assert await read_all(files, ino, FILE_SIZE) == model

    run_with_client(cluster, body, stop_after=False)


@pytest.mark.timeout(240)
def test_a_write_between_a_compactions_read_and_commit_is_not_lost(cluster: DataCluster) -> None:

    async def body(meta: MetaClient, files: FileData) -> None:
        # Slices are piled up (and read back) by a client that never compacts on its
        # own; the compaction under test is driven step by step; `files` writes
        # between its steps.
        piler = FileData(meta, cluster.meta.secret, call_timeout_s=30.0, max_slices=0)
        compactor = Compactor(piler, K)
        try:
            rng = random.Random(2102)
            model = bytearray(92 * KIB)  # the last piece ends at 92 KiB
            ino = (await meta.create(ROOT, ROOT_INO, b"raced", 0o644)).ino
            for index in range(12):  # 4 KiB every 8 KiB: 12 slices, holes between
                piece = rng.randbytes(4 * KIB)
                await piler.write(ROOT, ino, index * 8 * KIB, piece)
                model[index * 8 * KIB : index * 8 * KIB + 4 * KIB] = piece
            assert await slice_counts(meta, ino) == {0: 12}

            # A write that hides a slice the compaction read: its commit is refused.
            merged = await compactor.prepare(ROOT, ino, 0, DEFAULT_BLOCK_SIZE)
            assert merged is not None
            hiding = rng.randbytes(8 * KIB)
            await files.write(ROOT, ino, 0, hiding)
            model[0 : 8 * KIB] = hiding
            assert not await compactor.install(merged)
            assert compactor.refused == 1
            assert await read_all(piler, ino, len(model)) == model

            # A write that hides nothing: the merged chunk goes under it.
            merged = await compactor.prepare(ROOT, ino, 0, DEFAULT_BLOCK_SIZE)
            assert merged is not None
            beside = rng.randbytes(2 * KIB)
            await files.write(ROOT, ino, 90 * KIB, beside)
            model[90 * KIB : 92 * KIB] = beside
            mtime = (await meta.getattr(ROOT, ino)).mtime_ns
            assert await compactor.install(merged)
            assert await slice_counts(meta, ino) == {0: len(merged.update.slices) + 1}
            assert (await meta.getattr(ROOT, ino)).mtime_ns == mtime  # no byte changed
            assert await read_all(piler, ino, len(model)) == model
        finally:
            await piler.close()

    run_with_client(cluster, body, stop_after=False)


@pytest.mark.timeout(240)
def test_two_writers_and_their_compactions_lose_nothing(cluster: DataCluster) -> None:
    """Two clients (two sessions) take turns writing small pieces into one small file,
    each compacting past 2 slices in the background while the other writes on: their
    compactions keep meeting blocks changed under them, and the file ends as the model."""

    async def body(meta: MetaClient, files: FileData) -> None:
        other_meta = MetaClient(cluster.meta.addr_list, cluster.meta.secret, POLICY,
                                client_name="other")
        await other_meta.open()
        other = FileData(other_meta, cluster.meta.secret, call_timeout_s=30.0, max_slices=2)
        mine = FileData(meta, cluster.meta.secret, call_timeout_s=30.0, max_slices=2)
        try:
            rng = random.Random(2104)
            model = bytearray(rng.randbytes(256 * KIB))
            ino = (await meta.create(ROOT, ROOT_INO, b"two-writers", 0o644)).ino
            await mine.write(ROOT, ino, 0, bytes(model))
            for turn in range(160):
                length = rng.randrange(1, 32 * KIB)
                offset = rng.randrange(0, len(model) - length)
                piece = rng.randbytes(length)
                await (mine if turn % 2 else other).write(ROOT, ino, offset, piece)
                model[offset : offset + length] = piece
            await mine.compactor.settled()
            await other.compactor.settled()
            compactions = mine.compactor.compacted + other.compactor.compacted
            refused = mine.compactor.refused + other.compactor.refused
            print(f"\ntwo writers: {compactions} compactions, {refused} refused; "
                  f"slices now {await slice_counts(meta, ino)}")
            assert compactions >= 1
            assert await read_all(files, ino, len(model)) == model
        finally:
            await mine.close()
            await other.close()
            await other_meta.close()

    run_with_client(cluster, body, stop_after=False)


@pytest.mark.timeout(240)
def test_reads_go_around_a_stopped_first_copy(cluster: DataCluster) -> None:

    async def body(meta: MetaClient, files: FileData) -> None:
        rng = random.Random(2103)
        written: dict[int, bytes] = {}
        for index in range(16):
            content = rng.randbytes(128 * KIB)
            ino = (await meta.create(ROOT, ROOT_INO, f"hedged-{index}".encode(), 0o644)).ino
            await files.write(ROOT, ino, 0, content)
            written[ino] = content
        reader = FileData(meta, cluster.meta.secret, call_timeout_s=30.0)
        try:
            ring = await reader.rings.current()
            chunk_of = {ino: (await meta.block_maps(ROOT, ino)).blocks[0].slices[0].chunk_id
                        for ino in written}
            firsts = Counter(ring.read_order(chunk)[0].addr for chunk in chunk_of.values())
            slow_addr, slowed_reads = firsts.most_common(1)[0]
            slow = next(cluster.servers[server_id]
                        for server_id, addr in cluster.addrs.items() if addr == slow_addr)
            slow.signal(signal.SIGSTOP)
            try:
                for ino, content in written.items():
                    assert await read_all(reader, ino, len(content)) == content
            finally:
                slow.signal(signal.SIGCONT)
            served = reader.chunks.served
            print(f"\nfirst copies on the stopped server: {slowed_reads} of {len(written)}; "
                  f"served by {dict(served)}; {reader.chunks.hedged_reads} hedges")
            assert served[slow_addr] == 0
            assert sum(served.values()) == len(written)
            assert reader.chunks.hedged_reads >= slowed_reads
            assert reader.chunks.hedge_wins >= slowed_reads
        finally:
            await reader.close()

    run_with_client(cluster, body, stop_after=False)
