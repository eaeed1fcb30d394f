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
MAX_PUT_GAP_S = 3.0


@pytest.fixture
def cluster(procs: ProcessSet, secret_file: Path) -> MetaCluster:
    meta = make_meta_cluster(procs, secret_file)
    meta.start_all()
    return meta


def leaders_voters(cluster: MetaCluster) -> set[int]:
    """The voters the leader names (empty if it did not answer: the machine is busy)."""
    status = cluster.status(cluster.leader(), timeout_s=5)
    return set(status.meta.voters) if status is not None else set()


async def wait_voters(cluster: MetaCluster, expected: set[int], timeout_s: float) -> None:
    # Status calls block: run them off the loop, so the writer's puts go on meanwhile.
    deadline = time.monotonic() + timeout_s
    while (voters := await asyncio.to_thread(leaders_voters, cluster)) != expected:
        assert time.monotonic() < deadline, f"voters {voters}, never {expected}"
        await asyncio.sleep(0.2)


async def write_while(cluster: MetaCluster, acknowledged: dict[bytes, bytes],
                      stop: asyncio.Event) -> float:
    """Put keys until `stop`; returns the longest gap between two acknowledgements."""
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    i = 0
    longest_gap = 0.0
    last_ack = time.monotonic()
    while not stop.is_set():
        key = f"m-{i}".encode()
        await client.put(key, key * 2)
        acknowledged[key] = key * 2
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last_ack)
        last_ack = now
        i += 1
    await client.close()
    return longest_gap


async def all_present(addrs: list[str], cluster: MetaCluster, written: dict[bytes, bytes]) -> bool:
    client = KvClient(addrs, cluster.secret, POLICY)
    await client.open()
    ok = all([await client.get(k) == v for k, v in written.items()])
    await client.close()
    return ok


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
        await wait_voters(cluster, {1, 2, 3, 4}, timeout_s=60)
        # The leader itself goes: it hands leadership over first (the admin tool asks
        # the new leader again), then it is removed like any voter.
        victim = await asyncio.to_thread(cluster.leader)
        removed = await asyncio.to_thread(cluster.admin, "meta", "remove", str(victim))
        assert removed.returncode == 0, removed.stdout + removed.stderr
        await wait_voters(cluster, {1, 2, 3, 4} - {victim}, timeout_s=10)
        # The removed replica stays up a while: it must not disturb the group.
        await asyncio.sleep(2.0)
        stop.set()
        longest_gap = await writer
        print(f"longest gap between acknowledged puts: {longest_gap:.3f} s")
        # Issue 15: no stall over 3 s. Measured up to 1.4 s on a 2-core machine at
        # load 27; the old bug (a removed replica leading) stalled for good.
        assert longest_gap < MAX_PUT_GAP_S
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
