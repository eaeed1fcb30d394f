"""The data lifecycle in a real cluster: 3 `dfs meta` + 4, later 5, `dfs data`
processes, R = 3, operated through `dfs admin`. One story, each step checked on the
servers' disks: a flipped byte is found by `scrub start` and the copy replaced; a
server killed with -9 and marked out is repaired to R copies on the others; a server
added moves exactly the copies `ring plan` priced (only onto it, about 1/N of them)
while a reader keeps reading every file without an error; a drained server becomes
removable with nothing lost. Every file reads back byte for byte at the end."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

from dfs.client.data import FileData
from dfs.placement.ring import Ring
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2
from tests.support.data_cluster import (
    DataCluster,
    WrittenFile,
    admin,
    assert_all_read_back,
    eventually,
    flip_byte_in_copy,
    holders_of,
    make_data_cluster,
    open_client,
    stop_all_at_once,
    write_file,
)
from tests.support.meta_cluster import make_meta_cluster
from tests.support.ports import free_addrs
from tests.support.procs import ProcessSet

R = 3
FILES = 14
LIFECYCLE_FLAGS = ["--pass-interval-s", "1", "--scrub-rate-mbps", "50"]


async def admin_ok(cluster: DataCluster, *words: str) -> bool:
    code, _ = await asyncio.to_thread(admin, cluster.meta, *words)
    return code == 0


async def ring_now(cluster: DataCluster) -> Ring:
    code, shown = await asyncio.to_thread(admin, cluster.meta, "ring", "show")
    assert code == 0 and isinstance(shown, dict), shown
    ring = common_pb2.Ring()
    ring.epoch = int(shown["epoch"])
    ring.replicas, ring.min_replicas = shown["replicas"], shown["min_replicas"]
    ring.vnodes_per_weight = shown["vnodes_per_weight"]
    for member in shown["members"]:
        ring.members.add(id=member["id"], addr=member["addr"], weight=member["weight"],
                         domain=member["domain"],
                         state=common_pb2.MemberState.Value(member["state"]))
    return Ring(config_from_proto(ring))


async def copies_at_homes(cluster: DataCluster, chunk_ids: list[int],
                          server_ids: list[int]) -> bool:
    """Every chunk has exactly its R homes' verified copies among server_ids."""
    ring = await ring_now(cluster)
    found = await holders_of(cluster, chunk_ids, server_ids)
    return all(found[c] == {m.id for m in ring.preference_list(c)} for c in chunk_ids)


async def pushed_total(cluster: DataCluster) -> int:
    _, listing = await asyncio.to_thread(admin, cluster.meta, "rebalance", "status")
    assert isinstance(listing, dict), listing
    return sum(server["pushed"] or 0 for server in listing["servers"])


async def keep_reading(files: FileData, written: list[WrittenFile],
                       stop: asyncio.Event) -> int:
    """Read every file over and over until stopped; the number of reads. Any failed or
    wrong read fails the test."""
    reads = 0
    while not stop.is_set():
        for item in written:
            got = await files.read(common_pb2.Caller(uid=0, gid=0), item.ino, 0, item.size)
            assert got == item.content(), f"inode {item.ino} read wrong during the move"
            reads += 1
    return reads


@pytest.mark.timeout(300)
def test_scrub_repair_rebalance_and_drain(procs: ProcessSet, secret_file: Path) -> None:
    meta = make_meta_cluster(procs, secret_file)
    meta.start_all()
    cluster = make_data_cluster(meta, count=4, extra_args=LIFECYCLE_FLAGS)
    cluster.start_all()
    new_addr = free_addrs(1)[0]

    async def body() -> None:
        client, files = await open_client(cluster)
        try:
            rng = random.Random(22)
            written: list[WrittenFile] = []
            chunk_ids: list[int] = []
            for index in range(FILES):
                item, ids = await write_file(client, files, f"f{index}", 100 + index,
                                             rng.randrange(1, 2_500_000))
                written.append(item)
                chunk_ids += ids
            everyone = [1, 2, 3, 4]
            await eventually(lambda: copies_at_homes(cluster, chunk_ids, everyone),
                             "every chunk on its homes")

            # A flipped byte: the scrub finds it and the copy is replaced from a twin.
            victim = chunk_ids[0]
            holder = min((await holders_of(cluster, [victim], everyone))[victim])
            flip_byte_in_copy(cluster.data_dirs[holder], victim)
            assert await admin_ok(cluster, "scrub", "start")

            async def replaced() -> bool:
                code, status = await asyncio.to_thread(admin, meta, "scrub", "status")
                assert isinstance(status, dict), status
                row = next(s for s in status["servers"] if s["id"] == holder)
                return bool(row["bad"] >= 1 and row["repaired"] >= 1 and code == 0)

            await eventually(replaced, "the scrub found and repaired the flipped byte")
            assert holder in (await holders_of(cluster, [victim], [holder]))[victim]

            # A server killed and marked out: repair brings every chunk back to R.
            cluster.kill(4)
            assert await admin_ok(cluster, "data", "out", "4")
            survivors = [1, 2, 3]
            await eventually(lambda: copies_at_homes(cluster, chunk_ids, survivors),
                             "R copies again after server 4 went out")
            await eventually(lambda: admin_ok(cluster, "data", "list"),
                             "every server heard and no chunk under-replicated or lost")
            await eventually(lambda: admin_ok(cluster, "data", "remove", "4"),
                             "server 4 removable once repair finished")
            await assert_all_read_back(files, written)

            # A server added: exactly the priced copies move, all onto it, while a
            # reader reads every file throughout.
            code, plan = await asyncio.to_thread(admin, meta, "ring", "plan", "add",
                                                 f"5={new_addr}")
            assert code == 0 and isinstance(plan, dict), plan
            assert [m["id"] for m in plan["members"] if int(m["gained"])] == [5]
            assert int(plan["chunks"]) == len(chunk_ids)
            expected_fraction = 1 / 4
            assert 0 < plan["moved_fraction"] < 2.5 * expected_fraction
            pushed_before = await pushed_total(cluster)
            stop_reading = asyncio.Event()
            reader = asyncio.ensure_future(keep_reading(files, written, stop_reading))
            cluster.addrs[5] = new_addr
            cluster.data_dirs[5] = procs.base_dir / "data5"
            cluster.start(5).wait_healthy(timeout_s=30)
            servers = [1, 2, 3, 5]
            await eventually(lambda: copies_at_homes(cluster, chunk_ids, servers),
                             "every chunk on its homes after server 5 joined")
            await eventually(lambda: admin_ok(cluster, "rebalance", "status"),
                             "rebalance status reports done")
            stop_reading.set()
            assert await reader > 0
            assert await pushed_total(cluster) - pushed_before == int(plan["copies_moved"])

            # A server drained: removable once it holds nothing live, nothing lost.
            assert await admin_ok(cluster, "data", "drain", "1")
            await eventually(lambda: admin_ok(cluster, "data", "remove", "1"),
                             "server 1 removable after its drain")
            assert not any((await holders_of(cluster, chunk_ids, [1])).values())
            cluster.servers[1].stop()
            await eventually(lambda: copies_at_homes(cluster, chunk_ids, [2, 3, 5]),
                             "every chunk on its homes without server 1")
            await assert_all_read_back(files, written)
        finally:
            with contextlib.suppress(Exception):
                await files.close()
            await client.close()

    try:
        asyncio.run(body())
    finally:
        stop_all_at_once(procs)
