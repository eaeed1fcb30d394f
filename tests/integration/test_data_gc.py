"""Space comes back: 3 `dfs meta` (short session timeout, so orphans are released
quickly) + 4 `dfs data` processes. An unlinked file's chunks leave every data server
through the GC queue; a file still linked keeps every copy and reads back intact.
GC races: a writer stopped (SIGSTOP) between uploading a chunk and committing it,
held past its session timeout while GC and the orphan sweep run, has its commit
refused with ESTALE once continued; files deleted and overwritten meanwhile lose
every dead chunk on every server, and no chunk of a live file is ever deleted."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.rpc import common_pb2
from tests.support.data_cluster import (
    DataCluster,
    WrittenFile,
    assert_all_read_back,
    chunks_of,
    eventually,
    holders_of,
    make_data_cluster,
    run_with_client,
    write_file,
)
from tests.support.meta_cluster import make_meta_cluster
from tests.support.procs import ProcessSet

ROOT = common_pb2.Caller(uid=0, gid=0)
ROOT_INO = 1
MIB = 1024 * 1024
SESSION_TIMEOUT_MS = 3000
GONE_WITHIN_S = 40.0


async def copies(cluster: DataCluster, chunk_ids: list[int]) -> int:
    """Verified copies of these chunks across all data servers."""
    found = await holders_of(cluster, chunk_ids, sorted(cluster.addrs))
    return sum(len(servers) for servers in found.values())


@pytest.mark.timeout(120)
def test_an_unlinked_files_chunks_leave_every_data_server(
    procs: ProcessSet, secret_file: Path
) -> None:
    meta = make_meta_cluster(procs, secret_file,
                             extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)])
    meta.start_all()
    cluster = make_data_cluster(meta)
    cluster.start_all()

    async def body(client: MetaClient, files: FileData) -> None:
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

    run_with_client(cluster, body)


SWEEP_FLAGS = ["--sweep-interval-s", "1", "--sweep-grace-s", "2", "--pass-interval-s", "2"]


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.timeout(180)
def test_a_stalled_writer_cannot_resurrect_a_swept_chunk_and_live_files_keep_theirs(
    procs: ProcessSet, secret_file: Path
) -> None:
    meta = make_meta_cluster(procs, secret_file,
                             extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)])
    meta.start_all()
    cluster = make_data_cluster(meta, extra_args=SWEEP_FLAGS)
    cluster.start_all()
    servers = sorted(cluster.addrs)
    report = procs.base_dir / "stalled-writer.json"

    async def body(client: MetaClient, files: FileData) -> None:
        rng = random.Random(5)
        live: dict[str, WrittenFile] = {}
        dead_chunks: list[int] = []
        for index in range(12):
            name = f"file{index}"
            live[name], _ = await write_file(client, files, name, index,
                                             rng.randrange(1, 1_500_000))
        writer = procs.start("stalled-writer", [
            sys.executable, "-m", "tests.support.data_cluster", "stalled-writer",
            ",".join(meta.addr_list), str(meta.secret_file), str(report)])

        async def writer_stopped() -> bool:
            return report.exists() and stopped(writer.pid)

        await eventually(writer_stopped, "the writer uploaded and stopped", GONE_WITHIN_S)
        stalled_chunk = json.loads(report.read_text())["chunk_id"]

        # Load while the writer sleeps: delete some files, overwrite others, write more.
        for index in range(0, 12, 3):
            name = f"file{index}"
            dead_chunks += await chunks_of(client, live[name].ino)
            await client.unlink(ROOT, ROOT_INO, name.encode())
            del live[name]
        for index in range(1, 12, 3):
            name = f"file{index}"
            before = await chunks_of(client, live[name].ino)
            rewritten = WrittenFile(live[name].ino, 1000 + index, live[name].size)
            await files.write(ROOT, rewritten.ino, 0, rewritten.content())
            live[name] = rewritten
            after = set(await chunks_of(client, rewritten.ino))
            dead_chunks += [c for c in before if c not in after]
        for index in range(12, 16):
            name = f"file{index}"
            live[name], _ = await write_file(client, files, name, index,
                                             rng.randrange(1, 1_500_000))
        assert dead_chunks

        async def all_gone() -> bool:
            found = await holders_of(cluster, [stalled_chunk, *dead_chunks], servers)
            return not any(found.values())

        await eventually(all_gone, "dead and stalled chunks gone from every server",
                         GONE_WITHIN_S)
        writer.signal(signal.SIGCONT)

        async def writer_done() -> bool:
            return bool(json.loads(report.read_text())["phase"] == "done")

        await eventually(writer_done, "the continued writer finished", GONE_WITHIN_S)
        assert json.loads(report.read_text())["outcome"] == "ESTALE"
        assert writer.popen.wait(timeout=30) == 0

        await assert_all_read_back(files, list(live.values()))
        live_chunks = [c for item in live.values() for c in await chunks_of(client, item.ino)]
        found = await holders_of(cluster, live_chunks, servers)
        assert all(len(found[c]) == 3 for c in live_chunks)

    run_with_client(cluster, body)
