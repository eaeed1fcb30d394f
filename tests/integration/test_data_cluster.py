"""Data servers in a real cluster: 3 `dfs meta` + 4 `dfs data` processes, R = 3,
driven through the client library (MetaClient + FileData). Files of random sizes
read back byte-identical; a data server killed with -9 costs no acknowledged byte;
writes during the outage still get R copies; a flipped byte on disk is read around, then repaired;
a ring change in the middle of writes either completes with R findable copies or
fails cleanly; every data server reports its status through the Admin service."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from dfs.auth import aio_channel
from dfs.placement.ring import Ring
from dfs.placement.wire import config_from_proto
from dfs.rpc import admin_pb2, admin_pb2_grpc
from tests.support.data_cluster import (
    ROOT,
    ROOT_INO,
    DataCluster,
    WrittenFile,
    assert_all_read_back,
    flip_byte_in_copy,
    holders,
    make_data_cluster,
    open_client,
    stop_all_at_once,
    write_file,
)
from tests.support.meta_cluster import make_meta_cluster
from tests.support.procs import ProcessSet

T = TypeVar("T")
MIB = 1024 * 1024
MAX_FILE = 20 * MIB
BODY_MAX_FILE = 8 * MIB
REPAIR_WITHIN_S = 30.0  # repair passes run every second


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def start_cluster(procs: ProcessSet, secret_file: Path) -> DataCluster:
    meta = make_meta_cluster(procs, secret_file)
    meta.start_all()
    data = make_data_cluster(meta)
    data.start_all()
    return data


def file_sizes(count: int, seed: int) -> list[int]:
    """0 B and 20 MiB, and sizes log-uniform from 1 B to 8 MiB in between: every order
    of magnitude up to two blocks is covered while the total stays near 75 MB, so the
    test fits its time budget on 2 shared cores (uniform sizes would write 1 GiB x 3)."""
    rng = random.Random(seed)
    return [0, MAX_FILE] + [
        int(math.exp(rng.uniform(0, math.log(BODY_MAX_FILE)))) for _ in range(count - 2)
    ]


@pytest.mark.timeout(180)
def test_files_survive_a_kill_writes_go_on_and_corruption_is_read_around(
    procs: ProcessSet, secret_file: Path
) -> None:
    cluster = start_cluster(procs, secret_file)

    async def body() -> None:
        meta, files = await open_client(cluster)
        try:
            written: list[WrittenFile] = []
            chunks_of: dict[int, list[int]] = {}
            sizes = file_sizes(100, seed=18)
            gate = asyncio.Semaphore(4)

            async def one(index: int, size: int) -> None:
                async with gate:
                    item, chunk_ids = await write_file(meta, files, f"f{index}", index, size)
                written.append(item)
                chunks_of[item.ino] = chunk_ids

            await asyncio.gather(*(one(i, size) for i, size in enumerate(sizes)))

            # kill -9 the server holding the most chunks' first copies; then every file
            # reads back byte-identical (which also proves the writes themselves).
            ring = Ring(config_from_proto(await meta.ring()))
            first_homes = [ring.read_order(c)[0].id for ids in chunks_of.values() for c in ids]
            victim = max(set(first_homes), key=first_homes.count)
            cluster.kill(victim)
            alive = set(cluster.addrs) - {victim}
            await assert_all_read_back(files, written)

            # Writes during the outage: three copies, all on live servers.
            outage: list[WrittenFile] = []
            for index in range(5):
                item, chunk_ids = await write_file(meta, files, f"outage{index}", 1000 + index,
                                                   3 * MIB + index)
                outage.append(item)
                for chunk_id in chunk_ids:
                    assert await holders(cluster, chunk_id, alive) == alive
            await assert_all_read_back(files, outage)

            # A flipped byte in the copy read first: the read goes to another copy.
            ring = Ring(config_from_proto(await meta.ring()))
            big = next(item for item in written if item.size == MAX_FILE)
            held_by: dict[int, set[int]] = {}
            for chunk_id in chunks_of[big.ino]:
                held_by[chunk_id] = await holders(cluster, chunk_id, alive)
                first_live = next(m.id for m in ring.read_order(chunk_id)
                                  if m.id in held_by[chunk_id])
                flip_byte_in_copy(cluster.data_dirs[first_live], chunk_id)
            fresh_meta, fresh_files = await open_client(cluster)
            try:
                await assert_all_read_back(fresh_files, [big])
                # The reads marked the bad copies; the servers' repair passes replace
                # them from good ones.
                deadline = time.monotonic() + REPAIR_WITHIN_S
                for chunk_id, servers in held_by.items():
                    while (await holders(cluster, chunk_id, alive) != servers
                           and time.monotonic() < deadline):
                        await asyncio.sleep(0.5)
                    assert await holders(cluster, chunk_id, alive) == servers, chunk_id
                # Every write acknowledged since the kill, byte for byte, after all of it
                # (the earlier ones were read back after the kill).
                await assert_all_read_back(fresh_files, outage)
            finally:
                await fresh_files.close()
                await fresh_meta.close()
        finally:
            await files.close()
            await meta.close()

    try:
        run(body)
    finally:
        stop_all_at_once(procs)


@pytest.mark.timeout(120)
def test_a_ring_change_in_the_middle_of_writes(procs: ProcessSet, secret_file: Path) -> None:
    cluster = start_cluster(procs, secret_file)

    async def body() -> None:
        meta, files = await open_client(cluster)
        try:
            first_epoch = (await meta.ring()).epoch
            acked: list[WrittenFile] = []
            epochs: set[int] = set()
            failures: list[OSError] = []
            stop = asyncio.Event()

            async def writer() -> None:
                index = 0
                while not stop.is_set():
                    index += 1
                    size = 2 * 4 * MIB + index  # three chunks
                    try:
                        attr = await meta.create(ROOT, ROOT_INO, f"w{index}".encode(), 0o644)
                        item = WrittenFile(attr.ino, index, size)
                        result = await files.write(ROOT, attr.ino, 0, item.content())
                    except OSError as err:  # a clean failure: nothing acknowledged
                        failures.append(err)
                        continue
                    acked.append(item)
                    epochs.update(chunk.epoch for chunk in result.chunks)

            task = asyncio.ensure_future(writer())
            await asyncio.sleep(0.5)
            # A fifth data server joins: the ring's epoch moves on under the writer.
            fifth = 5
            cluster.addrs[fifth] = (await asyncio.to_thread(_free_addr))
            cluster.data_dirs[fifth] = procs.base_dir / f"data{fifth}"
            cluster.start(fifth)
            await asyncio.to_thread(cluster.servers[fifth].wait_healthy, 30)
            new_epoch = (await meta.ring()).epoch
            assert new_epoch > first_epoch
            # Long enough for every data server to hear of it and refuse old epochs.
            deadline = asyncio.get_running_loop().time() + 20
            while new_epoch not in epochs and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
            stop.set()
            await task
            assert first_epoch in epochs and new_epoch in epochs, (epochs, failures)
            assert all(isinstance(err, OSError) and err.errno for err in failures)
            ring = Ring(config_from_proto(await meta.ring()))
            alive = set(cluster.addrs)
            for item in acked:
                for block_map in (await meta.block_maps(ROOT, item.ino)).blocks:
                    for piece in block_map.slices:
                        found = await holders(cluster, piece.chunk_id, alive)
                        assert len(found) >= 3, (piece.chunk_id, found)
                        assert found & {m.id for m in ring.read_order(piece.chunk_id)}
            for server_id, addr in cluster.addrs.items():
                async with aio_channel(addr, cluster.meta.secret) as channel:
                    admin = admin_pb2_grpc.AdminStub(channel)
                    status = await admin.Status(admin_pb2.StatusRequest(), timeout=10)
                    assert status.kind == admin_pb2.SERVER_KIND_DATA and status.id == server_id
                    assert status.data.ring_epoch >= new_epoch and status.data.capacity > 0
                    assert (status.data.chunks > 0) == (status.data.used > 0)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await admin.DataDrain(admin_pb2.DataMemberRequest(id=server_id))
                    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            fresh_meta, fresh_files = await open_client(cluster)
            try:
                await assert_all_read_back(fresh_files, acked)
            finally:
                await fresh_files.close()
                await fresh_meta.close()
        finally:
            await files.close()
            await meta.close()

    try:
        run(body)
    finally:
        stop_all_at_once(procs)


def _free_addr() -> str:
    from tests.support.ports import free_addrs

    return free_addrs(1)[0]
