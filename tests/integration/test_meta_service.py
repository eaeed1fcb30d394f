"""The namespace served through the log by real `dfs meta` processes, through the
client library: exactly-once mutations across leader kills, readdir paging
under churn, session expiry, and orphans kept while a live session holds them."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Iterator

import grpc
import pytest

from dfs.auth import aio_channel, init_cluster_dir
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.meta.meta_service import OPEN_BLOCK_MAPS_MAX
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc
from tests.support.meta_cluster import MetaCluster, make_meta_cluster
from tests.support.procs import ProcessSet

ROOT = common_pb2.Caller(uid=0, gid=0)
POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=1.0)
SESSION_TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaCluster]:
    base = tmp_path_factory.mktemp("meta-service")
    secret_file, _ = init_cluster_dir(base / "cluster")
    procs = ProcessSet(base)
    meta = make_meta_cluster(procs, secret_file,
                             extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)])
    try:
        meta.start_all()
        yield meta
    finally:
        procs.cleanup()


def restart_dead(cluster: MetaCluster) -> None:
    for node_id, proc in cluster.replicas.items():
        if not proc.alive():
            cluster.start(node_id).wait_healthy(timeout_s=30)


async def new_client(cluster: MetaCluster) -> MetaClient:
    client = MetaClient(cluster.addr_list, cluster.secret, POLICY, client_name="test")
    await client.open()
    return client


async def names_in(client: MetaClient, ino: int, page: int = 1000) -> list[bytes]:
    names, cookie = [], 0
    while True:
        reply = await client.readdir(ROOT, ino, cookie=cookie, limit=page)
        names += [e.name for e in reply.entries]
        if reply.eof or not reply.entries:
            return names
        cookie = reply.entries[-1].cookie


def test_retried_create_returns_the_original_inode(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = await new_client(cluster)
        top = await client.mkdir(ROOT, 1, b"retry", 0o755)
        session, sequence, acked = client.session.next_request()
        request = meta_pb2.MakeNodeRequest(
            request=common_pb2.RequestId(session=session, sequence=sequence, acked=acked),
            caller=ROOT, parent=top.ino, name=b"made-once", kind=common_pb2.FILE_KIND_REGULAR,
            mode=0o644, exclusive=True,
        )

        async def send() -> meta_pb2.AttrReply:
            async def attempt(channel: grpc.aio.Channel, timeout: float) -> meta_pb2.AttrReply:
                reply: meta_pb2.AttrReply = await meta_pb2_grpc.MetaStub(channel).MakeNode(
                    request, timeout=timeout)
                return reply

            return await client.channels.call(attempt)

        first = await send()  # pretend this answer was lost on the way back
        assert first.errno == 0
        cluster.kill(cluster.leader())
        again = await send()
        assert again.errno == 0, f"retry answered {errno.errorcode.get(again.errno)}"
        assert again.attr.ino == first.attr.ino
        assert await names_in(client, top.ino) == [b"made-once"]
        await client.close()

    asyncio.run(scenario())
    restart_dead(cluster)


def test_tree_built_and_renamed_across_a_leader_kill(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = await new_client(cluster)
        top = await client.mkdir(ROOT, 1, b"tree", 0o755)
        expected: dict[bytes, list[bytes]] = {}

        async def build() -> None:
            for d in range(12):
                name = f"d{d}".encode()
                sub = await client.mkdir(ROOT, top.ino, name, 0o755)
                expected[name] = []
                for f in range(6):
                    await client.create(ROOT, sub.ino, f"f{f}".encode(), 0o644)
                    expected[name].append(f"f{f}".encode())

        builder = asyncio.create_task(build())
        await asyncio.sleep(0.3)
        cluster.kill(cluster.leader())
        await builder
        await client.rename(ROOT, 1, b"tree", 1, b"tree-renamed")
        renamed = await client.lookup(ROOT, 1, b"tree-renamed")
        with pytest.raises(FileNotFoundError):
            await client.lookup(ROOT, 1, b"tree")
        assert sorted(await names_in(client, renamed.ino)) == sorted(expected)
        for name, files in expected.items():
            sub = await client.lookup(ROOT, renamed.ino, name)
            assert sorted(await names_in(client, sub.ino)) == sorted(files)
        await client.close()

    asyncio.run(scenario())
    restart_dead(cluster)


@pytest.mark.timeout(180)
def test_64_clients_many_in_flight_across_a_leader_change(cluster: MetaCluster) -> None:
    clients_count, files_each = 64, 8

    async def scenario() -> None:
        admin = await new_client(cluster)
        top = await admin.mkdir(ROOT, 1, b"many", 0o755)
        clients = await asyncio.gather(*(new_client(cluster) for _ in range(clients_count)))
        dirs = [await admin.mkdir(ROOT, top.ino, f"c{n}".encode(), 0o755)
                for n in range(clients_count)]

        async def work(client: MetaClient, parent: int) -> None:
            # All of one client's creates in flight at once, on one session.
            await asyncio.gather(*(client.create(ROOT, parent, f"f{i}".encode(), 0o644)
                                   for i in range(files_each)))

        jobs = asyncio.gather(*(work(c, d.ino) for c, d in zip(clients, dirs, strict=True)))
        await asyncio.sleep(0.2)
        cluster.kill(cluster.leader())
        await jobs  # an exclusive create applied twice would have raised EEXIST here
        for d in dirs:
            assert sorted(await names_in(admin, d.ino)) == sorted(
                f"f{i}".encode() for i in range(files_each))
        await asyncio.gather(*(c.close() for c in clients))
        await admin.close()

    asyncio.run(scenario())
    restart_dead(cluster)


def test_readdir_paging_is_exact_under_churn(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = await new_client(cluster)
        top = await client.mkdir(ROOT, 1, b"churn", 0o755)
        stable = [f"stable-{i:03d}".encode() for i in range(150)]
        await asyncio.gather(*(client.create(ROOT, top.ino, n, 0o644) for n in stable))
        stop = asyncio.Event()

        async def churn() -> None:
            i = 0
            while not stop.is_set():
                name = f"temp-{i}".encode()
                await client.create(ROOT, top.ino, name, 0o644)
                if i % 2:
                    await client.unlink(ROOT, top.ino, f"temp-{i - 1}".encode())
                i += 1

        churner = asyncio.create_task(churn())
        for _ in range(3):
            listed = await names_in(client, top.ino, page=7)
            seen_stable = [n for n in listed if n.startswith(b"stable-")]
            assert sorted(seen_stable) == stable, "a stable entry was missed or repeated"
            assert len(listed) == len(set(listed)), "an entry was returned twice"
        stop.set()
        await churner
        await client.close()

    asyncio.run(scenario())


def test_silent_session_expires_then_gets_estale(cluster: MetaCluster) -> None:
    async def scenario() -> None:
        client = await new_client(cluster)  # a live client, for the request path
        opened = await client.channels.call(
            lambda channel, timeout: meta_pb2_grpc.MetaStub(channel).OpenSession(
                meta_pb2.OpenSessionRequest(client="silent"), timeout=timeout))
        assert opened.errno == 0 and opened.timeout_ms == SESSION_TIMEOUT_MS

        async def mkdir_as(sequence: int) -> meta_pb2.AttrReply:
            request = meta_pb2.MakeNodeRequest(
                request=common_pb2.RequestId(session=opened.session, sequence=sequence),
                caller=ROOT, parent=1, name=f"silent-{sequence}".encode(),
                kind=common_pb2.FILE_KIND_DIRECTORY, mode=0o755)

            async def attempt(channel: grpc.aio.Channel, timeout: float) -> meta_pb2.AttrReply:
                reply: meta_pb2.AttrReply = await meta_pb2_grpc.MetaStub(channel).MakeNode(
                    request, timeout=timeout)
                return reply

            return await client.channels.call(attempt)

        assert (await mkdir_as(1)).errno == 0  # the session works while fresh
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000 * 2 + 1.5)  # no keepalives meanwhile
        late = await mkdir_as(2)
        assert late.errno == errno.ESTALE, "a session silent past its timeout must be gone"
        with pytest.raises(FileNotFoundError):
            await client.lookup(ROOT, 1, b"silent-2")
        await client.close()

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_orphan_held_open_keeps_its_chunks_across_a_leader_change(cluster: MetaCluster) -> None:
    async def gc_queue() -> list[int]:
        async with aio_channel(cluster.addrs[cluster.leader()], cluster.secret) as channel:
            reply = await meta_pb2_grpc.ClusterStub(channel).FetchGC(
                meta_pb2.FetchGCRequest(limit=10_000), timeout=5)
            return list(reply.chunk_ids)

    async def scenario() -> None:
        holder, other = await new_client(cluster), await new_client(cluster)
        top = await holder.mkdir(ROOT, 1, b"orphans", 0o755)
        attr = await holder.create(ROOT, top.ino, b"held", 0o644)
        first, _ = await holder.alloc_chunk_ids(4)
        update = meta_pb2.BlockUpdate(block=0, slices=[common_pb2.Slice(
            offset=0, length=100, chunk_id=first, offset_in_chunk=0, epoch=1)])
        await holder.commit(ROOT, attr.ino, [update], end=100)
        holder.hold(attr.ino)
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000)  # a keepalive reports it open
        await other.unlink(ROOT, top.ino, b"held")
        cluster.kill(cluster.leader())
        # Well past a session timeout and several duty rounds, at the new leader.
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000 * 2 + 2)
        assert first not in await gc_queue(), "released while a live session held it open"
        holder.release(attr.ino)
        deadline = time.monotonic() + 30
        while first not in await gc_queue():
            assert time.monotonic() < deadline, "never released after the holder let go"
            await asyncio.sleep(0.5)
        await holder.close()
        await other.close()

    asyncio.run(scenario())
    restart_dead(cluster)


def test_open_returns_the_block_maps_of_the_same_state_up_to_its_limit(
    cluster: MetaCluster,
) -> None:
    """Open with with_block_maps answers attributes and maps from one state (what
    GetBlockMap says right after); a file with more blocks than one reply carries
    gets its attributes only, and the client pages the maps itself."""
    async def scenario() -> None:
        client = await new_client(cluster)
        top = await client.mkdir(ROOT, 1, b"open-maps", 0o755)
        block_size = (await client.getattr(ROOT, top.ino)).blksize or 4 << 20
        for name, blocks in ((b"small", 3), (b"big", OPEN_BLOCK_MAPS_MAX + 1)):
            attr = await client.create(ROOT, top.ino, name, 0o644)
            first, _ = await client.alloc_chunk_ids(blocks)
            updates = [
                meta_pb2.BlockUpdate(block=b, slices=[common_pb2.Slice(
                    offset=0, length=10, chunk_id=first + b, offset_in_chunk=0, epoch=1)])
                for b in range(blocks)
            ]
            await client.commit(ROOT, attr.ino, updates, end=(blocks - 1) * block_size + 10)
            opened = await client.open_file(ROOT, attr.ino, 0, with_block_maps=True)
            plain = await client.open_file(ROOT, attr.ino, 0)
            assert not plain.HasField("block_maps")
            if blocks > OPEN_BLOCK_MAPS_MAX:
                assert not opened.HasField("block_maps")
                continue
            apart = await client.block_maps(ROOT, attr.ino)
            assert opened.block_maps == apart
            assert opened.block_maps.size == opened.attr.size
            assert [m.block for m in opened.block_maps.blocks] == list(range(blocks))
        await client.close()

    asyncio.run(scenario())
