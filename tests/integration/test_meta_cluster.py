"""Three real `dfs meta` processes: election, replication, kill -9 and SIGSTOP of
the leader, catch-up, exactly-once retries, and the secret check. Every write
a client was told succeeded must be there afterwards, byte for byte."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from dfs.auth import aio_channel
from dfs.client.kv import KvClient
from dfs.client.retry import RetryPolicy
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc
from tests.support.meta_cluster import MetaCluster, make_meta_cluster
from tests.support.procs import ProcessSet

POLICY = RetryPolicy(deadline_s=20, attempt_timeout_s=1.0)


@pytest.fixture
def cluster(procs: ProcessSet, secret_file: Path) -> MetaCluster:
    meta = make_meta_cluster(procs, secret_file)
    meta.start_all()
    return meta


async def put_all(client: KvClient, items: dict[bytes, bytes]) -> None:
    for key, value in items.items():
        await client.put(key, value)


async def read_all(client: KvClient, keys: list[bytes]) -> dict[bytes, bytes | None]:
    return {key: await client.get(key) for key in keys}


def test_elects_replicates_and_admin_reports(cluster: MetaCluster) -> None:
    leader = cluster.leader()
    report = cluster.admin_json("meta", "status")
    assert report["leader"] == leader
    members = report["members"]
    assert isinstance(members, list) and len(members) == 3
    assert sorted(m["id"] for m in members) == [1, 2, 3]

    async def scenario() -> int:
        client = KvClient(cluster.addr_list, cluster.secret, POLICY)
        await client.open()
        items = {f"key-{i}".encode(): f"value-{i}".encode() * (i + 1) for i in range(50)}
        await put_all(client, items)
        assert await read_all(client, list(items)) == items
        assert await client.cas(b"key-1", b"wrong", b"x") == (False, items[b"key-1"])
        assert await client.cas(b"key-1", items[b"key-1"], b"x") == (True, b"x")
        await client.close()
        status = cluster.status(leader)
        assert status is not None
        return status.meta.applied

    applied = asyncio.run(scenario())
    cluster.wait_applied([1, 2, 3], applied)  # followers apply the same log
    done = cluster.admin("kv", "get", "key-1")
    assert done.returncode == 0 and done.stdout.strip() == "x"


def test_leader_kill_under_load_loses_no_acknowledged_write(cluster: MetaCluster) -> None:
    acknowledged: dict[bytes, bytes] = {}
    acked_issue_times: list[float] = []  # when each acknowledged put was issued
    failover_s: list[float] = []

    async def writer(client: KvClient, name: str, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            key, value = f"{name}-{i}".encode(), f"{name}:{i}:{'x' * (i % 97)}".encode()
            issued = time.monotonic()
            await client.put(key, value)
            acknowledged[key] = value
            acked_issue_times.append(issued)
            i += 1

    async def scenario() -> None:
        clients = [KvClient(cluster.addr_list, cluster.secret, POLICY) for _ in range(4)]
        for client in clients:
            await client.open()
        for round_ in range(3):
            stop = asyncio.Event()
            writers = [asyncio.create_task(writer(c, f"r{round_}w{n}", stop))
                       for n, c in enumerate(clients)]
            await asyncio.sleep(0.5)
            leader = cluster.leader()
            killed_at = time.monotonic()
            cluster.kill(leader)
            # Failover: until a put issued after the kill is acknowledged.
            while not any(t > killed_at for t in acked_issue_times[-8:]):
                await asyncio.sleep(0.01)
                assert time.monotonic() - killed_at < 20, "writes never resumed"
            failover_s.append(time.monotonic() - killed_at)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*writers)
            cluster.start(leader).wait_healthy(timeout_s=30)
        reader = clients[0]
        found = await read_all(reader, list(acknowledged))
        missing = [k for k, v in acknowledged.items() if found[k] != v]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        for client in clients:
            await client.close()

    asyncio.run(scenario())
    print(f"acknowledged {len(acknowledged)} puts; failover (kill -> next ack) "
          f"{', '.join(f'{s:.2f}s' for s in failover_s)}")
    # The restarted replicas catch up with the others.
    leader = cluster.leader()
    status = cluster.status(leader)
    assert status is not None
    cluster.wait_applied([1, 2, 3], status.meta.applied)


def test_paused_leader_steps_down_and_serves_no_stale_read(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = KvClient(cluster.addr_list, cluster.secret, POLICY)
        await client.open()
        await client.put(b"k", b"old")
        old_leader = cluster.leader()
        cluster.pause(old_leader)
        try:
            new_leader = cluster.leader(exclude={old_leader})
            assert new_leader != old_leader
            await client.put(b"k", b"new")  # acknowledged by the new majority
        finally:
            cluster.resume(old_leader)
        # Straight to the old leader, no redirects followed: it must not answer "old".
        async with aio_channel(cluster.addrs[old_leader], cluster.secret) as channel:
            stub = meta_pb2_grpc.KvStub(channel)
            for _ in range(20):
                try:
                    reply = await stub.Get(meta_pb2.KvRequest(key=b"k"), timeout=2)
                    assert reply.value == b"new", "stale read from a deposed leader"
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.05)
        status = cluster.status(old_leader)
        assert status is not None and status.meta.role != "leader"
        assert await client.get(b"k") == b"new"
        await client.close()

    asyncio.run(scenario())


def test_retry_after_leader_change_is_applied_once(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = KvClient(cluster.addr_list, cluster.secret, POLICY)
        await client.open()
        session = client.session.session
        # A CAS from "absent" succeeds once; applied twice it would fail the second time.
        request = meta_pb2.KvRequest(
            request=common_pb2.RequestId(session=session, sequence=1, acked=0),
            key=b"once", value=b"first", expect_absent=True,
        )

        async def send() -> meta_pb2.KvReply:
            async def attempt(channel: grpc.aio.Channel, timeout: float) -> meta_pb2.KvReply:
                reply: meta_pb2.KvReply = await meta_pb2_grpc.KvStub(channel).Cas(
                    request, timeout=timeout)
                return reply

            return await client.channels.call(attempt)

        first = await send()
        assert first.ok
        cluster.kill(cluster.leader())
        retried = await send()  # same session, same sequence, at the new leader
        assert retried.ok and retried.errno == 0, "the retry was applied a second time"
        assert await client.get(b"once") == b"first"
        await client.close()

    asyncio.run(scenario())


def test_call_without_secret_is_refused(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        async with aio_channel(cluster.addrs[1], None) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await meta_pb2_grpc.KvStub(channel).Get(meta_pb2.KvRequest(key=b"k"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(scenario())


def test_sigterm_exits_zero_and_restart_keeps_data(cluster: MetaCluster) -> None:
    async def write() -> None:
        client = KvClient(cluster.addr_list, cluster.secret, POLICY)
        await client.open()
        await client.put(b"durable", b"yes")
        await client.close()

    asyncio.run(write())
    codes = [proc.stop(timeout_s=15) for proc in cluster.replicas.values()]
    assert codes == [0, 0, 0]
    cluster.start_all()

    async def read() -> bytes | None:
        client = KvClient(cluster.addr_list, cluster.secret, POLICY)
        await client.open()
        value = await client.get(b"durable")
        await client.close()
        return value

    assert asyncio.run(read()) == b"yes"
