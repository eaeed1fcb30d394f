"""Snapshots on real `dfs meta` replicas: the WAL stays bounded, a restart from
snapshot + WAL keeps every acknowledged write, and a replica stopped for many
snapshots' worth of commands catches up by a snapshot transfer, resumed where it
broke when the receiver is killed midway."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from dfs.client.kv import KvClient
from dfs.client.retry import RetryPolicy
from tests.support.meta_cluster import MetaCluster, make_meta_cluster
from tests.support.procs import ProcessSet

POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=1.0)
SNAPSHOT_EVERY = 200
SEGMENT_BYTES = 16 * 1024
SLOW_SEND_RATE = 10_000  # bytes/s: a transfer of the test's ~40 KB snapshot takes seconds
MIN_PIECE = 4096  # the piece size at that rate (the node's floor)


@pytest.fixture
def cluster(procs: ProcessSet, secret_file: Path) -> MetaCluster:
    meta = make_meta_cluster(procs, secret_file, extra_args=[
        "--snapshot-every", str(SNAPSHOT_EVERY), "--wal-segment-bytes", str(SEGMENT_BYTES)])
    meta.start_all()
    return meta


async def put_many(cluster: MetaCluster, prefix: str, count: int) -> dict[bytes, bytes]:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    written: dict[bytes, bytes] = {}

    async def writer(lane: int) -> None:
        for i in range(lane, count, 8):
            key, value = f"{prefix}-{i}".encode(), f"{prefix}:{i}".encode() * 3
            await client.put(key, value)
            written[key] = value

    await asyncio.gather(*(writer(lane) for lane in range(8)))
    await client.close()
    return written


async def read_back(cluster: MetaCluster, written: dict[bytes, bytes]) -> list[bytes]:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    missing = [k for k, v in written.items() if await client.get(k) != v]
    await client.close()
    return missing


def wal_bytes(cluster: MetaCluster, node_id: int) -> int:
    wal_dir = cluster.procs.base_dir / f"meta{node_id}" / "wal"
    return sum(p.stat().st_size for p in wal_dir.glob("*.wal"))


@pytest.mark.timeout(180)
def test_wal_stays_bounded_and_restart_keeps_everything(cluster: MetaCluster) -> None:
    written = asyncio.run(put_many(cluster, "a", 1500))
    time.sleep(1.0)  # let the last snapshot finish
    for node_id in cluster.replicas:
        status = cluster.status(node_id)
        assert status is not None and status.meta.snapshot_slot >= SNAPSHOT_EVERY
        # 1500 puts wrote far more than this; old segments were dropped.
        assert wal_bytes(cluster, node_id) < 40 * SEGMENT_BYTES
    for proc in cluster.replicas.values():
        assert proc.stop(timeout_s=15) == 0
    cluster.start_all()
    assert asyncio.run(read_back(cluster, written)) == []
    # Restarted from snapshot + WAL, every replica holds exactly the same state.
    assert_same_state(cluster)


def assert_same_state(cluster: MetaCluster) -> None:
    from dfs.auth import sync_channel
    from dfs.rpc import admin_pb2, admin_pb2_grpc

    for _ in range(50):  # leader ticks move `applied` now and then: catch a still moment
        seen = {}
        for node_id, addr in cluster.addrs.items():
            with sync_channel(addr, cluster.secret) as channel:
                reply = admin_pb2_grpc.AdminStub(channel).Status(
                    admin_pb2.StatusRequest(state_digest=True), timeout=10)
            seen[node_id] = (reply.meta.applied, reply.meta.state_digest)
        if len({applied for applied, _ in seen.values()}) == 1:
            assert len({digest for _, digest in seen.values()}) == 1, seen
            return
        time.sleep(0.1)
    raise AssertionError(f"replicas never stood at one slot: {seen}")


def part_sizes(directory: Path) -> list[int]:
    sizes = []
    for part in directory.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
            sizes.append(part.stat().st_size)
    return sizes


@pytest.mark.timeout(180)
def test_lagging_replica_catches_up_by_a_snapshot_resumed_after_a_break(
    procs: ProcessSet, secret_file: Path
) -> None:
    """A replica stopped for many snapshots' worth of commands is sent a snapshot; it
    is killed midway through that (rate-capped) transfer, and after its restart the
    leader sends only the rest of the file. Then it equals the others and carries
    the group with one of them."""
    cluster = make_meta_cluster(procs, secret_file, extra_args=[
        "--snapshot-every", str(SNAPSHOT_EVERY), "--wal-segment-bytes", str(SEGMENT_BYTES),
        "--snapshot-send-rate", str(SLOW_SEND_RATE)])
    cluster.start_all()
    leader = cluster.leader()
    lagging = next(i for i in cluster.replicas if i != leader)
    cluster.kill(lagging)
    written = asyncio.run(put_many(cluster, "c", 1500))
    cluster.start(lagging)
    parts_dir = procs.base_dir / f"meta{lagging}" / "snapshots"
    deadline = time.monotonic() + 60
    while not any(size >= 2 * MIN_PIECE for size in part_sizes(parts_dir)):
        assert time.monotonic() < deadline, "no snapshot transfer started"
        time.sleep(0.02)
    cluster.kill(lagging)  # midway: the pieces so far are fsynced in its part file
    (part,) = parts_dir.glob("*.part")
    held_at_kill = part.stat().st_size
    cluster.start(lagging).wait_healthy(timeout_s=30)
    status = cluster.status(leader, timeout_s=10)
    assert status is not None
    cluster.wait_applied([lagging], status.meta.applied, timeout_s=60)
    # The restart may have moved leadership: whoever sent the rest says where it began.
    senders_log = "".join(cluster.replicas[i].log_path.read_text()
                          for i in cluster.replicas if i != lagging)
    resumed = [int(line.split(" at byte ")[1].split()[0]) for line in senders_log.splitlines()
               if "resuming snapshot" in line and f"to replica {lagging} " in line]
    assert resumed and max(resumed) >= held_at_kill, senders_log[-3000:]
    assert "installed a snapshot" in cluster.replicas[lagging].log_path.read_text()
    assert not list(parts_dir.glob("*.part"))
    assert_same_state(cluster)  # the installed snapshot + log equal never having lagged
    cluster.kill(cluster.leader())  # the two left, the caught-up one among them, serve all
    assert asyncio.run(read_back(cluster, written)) == []


@pytest.mark.long
@pytest.mark.timeout(900)
def test_long_100k_commands_keep_the_data_dir_bounded(procs: ProcessSet, secret_file: Path) -> None:
    meta = make_meta_cluster(procs, secret_file, extra_args=[
        "--snapshot-every", "10000", "--wal-segment-bytes", str(1 << 20)])
    meta.start_all()
    written = asyncio.run(put_many(meta, "long", 100_000))
    time.sleep(2.0)
    for node_id in meta.replicas:
        data_dir = procs.base_dir / f"meta{node_id}"
        total = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
        # Two snapshots of <= 100k keys plus a couple of WAL segments, not 100k commands.
        assert total < 64 << 20, f"replica {node_id} holds {total} bytes"
    assert asyncio.run(read_back(meta, written)) == []
