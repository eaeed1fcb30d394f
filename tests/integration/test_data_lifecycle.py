"""The data lifecycle in a real cluster: 3 `dfs meta` + 4, later 5, `dfs data`
processes, R = 3, operated through `dfs admin`. One story, each step checked on the
servers' disks: a flipped byte is found by `scrub start` and the copy replaced; a
server killed with -9 and marked out is repaired to R copies on the others; a server
added moves exactly the copies `ring plan` priced (only onto it, about 1/N of them)
while a reader keeps reading every file without an error; a drained server becomes
removable with nothing lost. Every file reads back byte for byte at the end.
The long variant churns at random (writes, overwrites, deletes, kills, adds, drains)
for DFS_LIFECYCLE_LONG_S seconds (seed: DFS_LIFECYCLE_SEED), then verifies every
file, every copy and every deletion."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.placement.ring import Ring
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2
from tests.support.data_cluster import (
    ROOT,
    ROOT_INO,
    DataCluster,
    WrittenFile,
    admin,
    assert_all_read_back,
    chunks_of,
    eventually,
    flip_byte_in_copy,
    holders_of,
    make_data_cluster,
    run_with_client,
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

    async def body(client: MetaClient, files: FileData) -> None:
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

    run_with_client(cluster, body)


# -- the long variant: random churn, then a full verification ------------------------------

LONG_S = float(os.environ.get("DFS_LIFECYCLE_LONG_S", "1800"))
LONG_FLAGS = ["--pass-interval-s", "2", "--sweep-interval-s", "5", "--sweep-grace-s", "10",
              "--scrub-rate-mbps", "8", "--scrub-rest-s", "60"]
LONG_META_FLAGS = ["--session-timeout-ms", "5000", "--data-out-after-s", "15"]
MIN_UP = 4  # R = 3 writes need 3 up servers; one more so a kill never stalls them


@dataclass
class Churn:
    """What the random run did and must find at the end."""

    cluster: DataCluster
    procs: ProcessSet
    rng: random.Random
    files: dict[str, list[WrittenFile]] = field(default_factory=dict)  # acceptable contents
    dead_chunks: set[int] = field(default_factory=set)
    up: set[int] = field(default_factory=set)  # members running and up (not draining/out)
    leaving: set[int] = field(default_factory=set)  # drained or out, to remove
    next_id: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def did(self, action: str) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1


async def churn_step(churn: Churn, client: MetaClient, files: FileData) -> None:
    rng = churn.rng
    action = rng.choices(["write", "overwrite", "delete", "kill", "add", "drain"],
                         weights=[30, 15, 10, 2, 2, 2])[0]
    if action == "write" or not churn.files:
        name = f"w{sum(churn.counts.values())}"
        item = WrittenFile(0, rng.randrange(1 << 30), rng.randrange(0, 3_000_000))
        try:
            attr = await client.create(ROOT, ROOT_INO, name.encode(), 0o644)
        except OSError:
            return
        item = WrittenFile(attr.ino, item.seed, item.size)
        churn.files[name] = [WrittenFile(attr.ino, 0, 0), item]  # empty if the write failed
        with contextlib.suppress(OSError):
            await files.write(ROOT, attr.ino, 0, item.content())
            churn.files[name] = [item]
        churn.did("write")
    elif action == "overwrite":
        name = rng.choice(sorted(churn.files))
        if len(churn.files[name]) > 1:
            return  # its content is already uncertain
        old = churn.files[name][0]
        new = WrittenFile(old.ino, rng.randrange(1 << 30), old.size)
        before = await chunks_of(client, old.ino)
        try:
            await files.write(ROOT, old.ino, 0, new.content())
        except OSError:
            churn.files[name] = [old, new]
            return
        churn.files[name] = [new]
        after = set(await chunks_of(client, old.ino))
        churn.dead_chunks |= {c for c in before if c not in after}
        churn.did("overwrite")
    elif action == "delete":
        name = rng.choice(sorted(churn.files))
        ino = churn.files[name][0].ino
        chunks = await chunks_of(client, ino)
        with contextlib.suppress(OSError):
            await client.unlink(ROOT, ROOT_INO, name.encode())
            del churn.files[name]
            churn.dead_chunks |= set(chunks)
            churn.did("delete")
    elif action == "kill" and len(churn.up) > MIN_UP:
        victim = rng.choice(sorted(churn.up))
        churn.cluster.kill(victim)
        churn.up.discard(victim)
        if rng.random() < 0.5:  # else the leader marks it down, then out (LONG_META_FLAGS)
            assert await admin_ok(churn.cluster, "data", "out", str(victim))
        churn.leaving.add(victim)
        churn.did("kill")
    elif action == "drain" and len(churn.up) > MIN_UP:
        victim = rng.choice(sorted(churn.up))
        assert await admin_ok(churn.cluster, "data", "drain", str(victim))
        churn.up.discard(victim)
        churn.leaving.add(victim)
        churn.did("drain")
    elif action == "add" and len(churn.up) + len(churn.leaving) < 7:
        await add_server(churn)
        churn.did("add")


async def add_server(churn: Churn) -> None:
    churn.next_id += 1
    server_id = churn.next_id
    churn.cluster.addrs[server_id] = free_addrs(1)[0]
    churn.cluster.data_dirs[server_id] = churn.procs.base_dir / f"data{server_id}"
    await asyncio.to_thread(churn.cluster.start(server_id).wait_healthy, 30)
    churn.up.add(server_id)


async def remove_finished(churn: Churn) -> None:
    """Remove every leaving server the leader agrees is safe to remove, then stop it."""
    for server_id in sorted(churn.leaving):
        if await admin_ok(churn.cluster, "data", "remove", str(server_id)):
            churn.leaving.discard(server_id)
            proc = churn.cluster.servers[server_id]
            if proc.alive():
                proc.stop()


@pytest.mark.long
@pytest.mark.timeout(LONG_S + 900)
def test_random_churn_then_full_verification(procs: ProcessSet, secret_file: Path) -> None:
    meta = make_meta_cluster(procs, secret_file, extra_args=LONG_META_FLAGS)
    meta.start_all()
    cluster = make_data_cluster(meta, count=5, extra_args=LONG_FLAGS)
    cluster.start_all()
    seed = int(os.environ.get("DFS_LIFECYCLE_SEED", random.randrange(1 << 30)))
    print(f"DFS_LIFECYCLE_SEED={seed}")
    churn = Churn(cluster, procs, random.Random(seed), up=set(cluster.addrs), next_id=5)

    async def body(client: MetaClient, files: FileData) -> None:
        deadline = time.monotonic() + LONG_S
        last_removal = time.monotonic()
        while time.monotonic() < deadline:
            await churn_step(churn, client, files)
            if time.monotonic() - last_removal > 5:
                await remove_finished(churn)
                last_removal = time.monotonic()
        # Quiet: every leaving server becomes removable, the cluster settles.
        await eventually(lambda: remove_or_wait(churn), "every leaving server removed",
                         600)
        running = sorted(churn.up)
        await eventually(lambda: admin_ok(cluster, "rebalance", "status"),
                         "rebalance done", 600)
        for name, acceptable in churn.files.items():
            item = acceptable[-1]
            got = await files.read(ROOT, item.ino, 0, max(a.size for a in acceptable) + 1)
            assert any(got == a.content() for a in acceptable), f"{name} lost its bytes"
        live = sorted({c for acceptable in churn.files.values()
                       for c in await chunks_of(client, acceptable[0].ino)})
        assert await copies_at_homes(cluster, live, running)
        dead = sorted(churn.dead_chunks - set(live))
        await eventually(lambda: none_held(cluster, dead, running),
                         "every dead chunk gone from every server", 120)
        print(f"churn: {churn.counts}, {len(churn.files)} files, {len(live)} live chunks")

    run_with_client(cluster, body)


async def remove_or_wait(churn: Churn) -> bool:
    await remove_finished(churn)
    return not churn.leaving


async def none_held(cluster: DataCluster, chunk_ids: list[int], server_ids: list[int]) -> bool:
    return not any((await holders_of(cluster, chunk_ids, server_ids)).values())
