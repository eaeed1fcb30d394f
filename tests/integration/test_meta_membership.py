"""Membership on real replicas: a 4th replica joins (learner, catch-up, voter)
and one is removed while writes go on, and leadership moves on request; no
acknowledged write is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dfs.client.kv import KvClient
from dfs.client.retry import RetryPolicy
from tests.support.meta_cluster import DFS, MetaCluster, make_meta_cluster
from tests.support.ports import free_addrs
from tests.support.procs import ProcessSet

POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=1.0)


@pytest.fixture
def cluster(procs: ProcessSet, secret_file: Path) -> MetaCluster:
    meta = make_meta_cluster(procs, secret_file)
    meta.start_all()
    return meta


def voters_of(cluster: MetaCluster, node_id: int) -> set[int]:
    status = cluster.status(node_id)
    assert status is not None
    return set(status.meta.voters)


async def write_while(cluster: MetaCluster, acknowledged: dict[bytes, bytes],
                      stop: asyncio.Event) -> None:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    i = 0
    while not stop.is_set():
        key = f"m-{i}".encode()
        await client.put(key, key * 2)
        acknowledged[key] = key * 2
        i += 1
    await client.close()


async def all_present(addrs: list[str], cluster: MetaCluster, written: dict[bytes, bytes]) -> bool:
    client = KvClient(addrs, cluster.secret, POLICY)
    await client.open()
    ok = all([await client.get(k) == v for k, v in written.items()])
    await client.close()
    return ok


# In `make test-long` only, for now: in one of four full runs a put stalled past its
# 30 s deadline around the remove (a liveness bug under investigation, issue 15).
@pytest.mark.long
@pytest.mark.timeout(180)
def test_join_then_remove_while_writing(cluster: MetaCluster, procs: ProcessSet) -> None:
    (new_addr,) = free_addrs(1)
    acknowledged: dict[bytes, bytes] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(write_while(cluster, acknowledged, stop))
        await asyncio.sleep(0.5)
        joiner = procs.start("meta4", [
            *DFS, "meta", "--id", "4", "--listen", new_addr, "--join", cluster.addrs[1],
            "--data-dir", str(procs.base_dir / "meta4"), "--secret", str(cluster.secret_file),
        ], addr=new_addr)
        cluster.addrs[4], cluster.replicas[4] = new_addr, joiner
        deadline = time.monotonic() + 60
        while voters_of(cluster, cluster.leader()) != {1, 2, 3, 4}:
            assert time.monotonic() < deadline, "the 4th replica never became a voter"
            await asyncio.sleep(0.2)
        victim = next(i for i in (1, 2, 3) if i != cluster.leader())
        removed = await asyncio.to_thread(cluster.admin, "meta", "remove", str(victim))
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert voters_of(cluster, cluster.leader()) == {1, 2, 3, 4} - {victim}
        await asyncio.sleep(0.5)
        stop.set()
        await writer
        cluster.kill(victim)  # no longer needed by anyone
        remaining = [cluster.addrs[i] for i in sorted(cluster.addrs) if i != victim]
        assert await all_present(remaining, cluster, acknowledged)

    asyncio.run(scenario())
    assert len(acknowledged) > 20


@pytest.mark.timeout(120)
def test_transfer_leader_under_load(cluster: MetaCluster) -> None:
    acknowledged: dict[bytes, bytes] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(write_while(cluster, acknowledged, stop))
        await asyncio.sleep(0.5)
        old = cluster.leader()
        target = next(i for i in cluster.replicas if i != old)
        moved = await asyncio.to_thread(cluster.admin, "meta", "transfer-leader", str(target))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        deadline = time.monotonic() + 20
        while cluster.leader() != target:
            assert time.monotonic() < deadline, "leadership did not move"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        stop.set()
        await writer
        assert await all_present(cluster.addr_list, cluster, acknowledged)

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_five_replicas_survive_two_leader_kills(procs: ProcessSet, secret_file: Path) -> None:
    """A 5-replica group works the same: it keeps a majority through two kills."""
    five = make_meta_cluster(procs, secret_file, count=5)
    five.start_all()
    acknowledged: dict[bytes, bytes] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(write_while(five, acknowledged, stop))
        for _ in range(2):
            await asyncio.sleep(0.5)
            five.kill(five.leader())
        await asyncio.sleep(1.0)
        stop.set()
        await writer
        alive = [five.addrs[i] for i, p in five.replicas.items() if p.alive()]
        assert await all_present(alive, five, acknowledged)

    asyncio.run(scenario())
    assert len(acknowledged) > 20
