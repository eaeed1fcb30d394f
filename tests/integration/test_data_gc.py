"""Space comes back: 3 `dfs meta` (short session timeout, so orphans are released
quickly) + 4 `dfs data` processes. An unlinked file's chunks leave every data server
through the GC queue; a file still linked keeps every copy and reads back intact."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from dfs.auth import aio_channel
from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.rpc import common_pb2, data_pb2, data_pb2_grpc
from tests.support.data_cluster import DataCluster, make_data_cluster, stop_all_at_once
from tests.support.meta_cluster import make_meta_cluster
from tests.support.procs import ProcessSet

ROOT = common_pb2.Caller(uid=0, gid=0)
ROOT_INO = 1
MIB = 1024 * 1024
SESSION_TIMEOUT_MS = 3000
GONE_WITHIN_S = 40.0


async def copies(cluster: DataCluster, chunk_ids: list[int]) -> int:
    """Verified copies of these chunks across all data servers."""
    total = 0
    for addr in cluster.addrs.values():
        async with aio_channel(addr, cluster.meta.secret) as channel:
            reply = await data_pb2_grpc.DataStub(channel).HasChunks(
                data_pb2.HasChunksRequest(chunk_ids=chunk_ids, verify=True), timeout=10)
            total += sum(reply.present)
    return total


@pytest.mark.timeout(120)
def test_an_unlinked_files_chunks_leave_every_data_server(
    procs: ProcessSet, secret_file: Path
) -> None:
    meta = make_meta_cluster(procs, secret_file,
                             extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)])
    meta.start_all()
    cluster = make_data_cluster(meta)
    cluster.start_all()

    async def body() -> None:
        client = MetaClient(meta.addr_list, meta.secret,
                            RetryPolicy(deadline_s=30, attempt_timeout_s=2.0))
        await client.open()
        files = FileData(client, meta.secret, call_timeout_s=10.0)
        try:
            contents = {name: random.Random(name).randbytes(2 * 4 * MIB + 7)
                        for name in (b"kept", b"doomed")}
            chunks: dict[bytes, list[int]] = {}
            inodes: dict[bytes, int] = {}
            for name, content in contents.items():
                attr = await client.create(ROOT, ROOT_INO, name, 0o644)
                result = await files.write(ROOT, attr.ino, 0, content)
                chunks[name] = [chunk.chunk_id for chunk in result.chunks]
                inodes[name] = attr.ino
            assert await copies(cluster, chunks[b"doomed"]) == 3 * 3
            await client.unlink(ROOT, ROOT_INO, b"doomed")
            deadline = time.monotonic() + GONE_WITHIN_S
            while await copies(cluster, chunks[b"doomed"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert await copies(cluster, chunks[b"doomed"]) == 0
            assert await copies(cluster, chunks[b"kept"]) == 3 * 3
            got = await files.read(ROOT, inodes[b"kept"], 0, len(contents[b"kept"]))
            assert got == contents[b"kept"]
        finally:
            await files.close()
            await client.close()

    try:
        asyncio.run(body())
    finally:
        stop_all_at_once(procs)
