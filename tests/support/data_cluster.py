"""Data servers for tests: in-process ones (real gRPC on loopback, real chunk stores)
with a stand-in metadata service for unit tests of the data layer, and real
`dfs data` processes beside a MetaCluster for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dfs.auth import ClusterSecret, aio_channel, read_secret
from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.client.retry import LeaderChannels, RetryPolicy
from dfs.data.chain import PeerChannels
from dfs.data.load import Load
from dfs.data.ringview import RingView
from dfs.data.service import DataService
from dfs.data.store import ChunkStore
from dfs.placement.members import Member, MemberState, RingConfig
from dfs.placement.wire import config_to_proto
from dfs.rpc import common_pb2, data_pb2, data_pb2_grpc, meta_pb2, meta_pb2_grpc
from dfs.serving import GrpcServer
from tests.support.meta_cluster import MetaCluster
from tests.support.ports import free_addrs
from tests.support.procs import ProcessSet, ServerProcess

DFS = [sys.executable, "-m", "dfs.cli"]
ROOT = common_pb2.Caller(uid=0, gid=0)
ROOT_INO = 1
POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=2.0)

# -- in-process data servers ---------------------------------------------------------


@dataclass
class LocalDataServer:
    """One data server inside the test's event loop."""

    server_id: int
    addr: str
    store: ChunkStore
    ring: RingView
    load: Load
    service: DataService
    server: GrpcServer
    peers: PeerChannels
    running: bool = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.server.stop(0)
            await self.peers.close()


async def start_local_data_server(
    server_id: int,
    data_dir: Path,
    secret: ClusterSecret | None = None,
    capacity: int = 0,
    store: ChunkStore | None = None,
    addr: str | None = None,
) -> LocalDataServer:
    """A Data service on a loopback port over a real ChunkStore in data_dir."""
    store = store or ChunkStore(data_dir)
    ring, load, peers = RingView(), Load(capacity), PeerChannels(secret)
    server = GrpcServer(addr or "127.0.0.1:0", secret)
    listen_addr = addr or ""
    service = DataService(store, ring, listen_addr, load, peers)
    server.add(lambda s: data_pb2_grpc.add_DataServicer_to_server(service, s))
    await server.start()
    service.self_addr = listen_addr = addr or f"127.0.0.1:{server.port}"
    return LocalDataServer(server_id, listen_addr, store, ring, load, service, server, peers)


async def start_local_data_servers(
    count: int, base_dir: Path, secret: ClusterSecret | None = None, capacity: int = 0
) -> list[LocalDataServer]:
    return [
        await start_local_data_server(i, base_dir / f"data{i}", secret, capacity)
        for i in range(1, count + 1)
    ]


def ring_of_servers(
    servers: Sequence[LocalDataServer],
    epoch: int = 1,
    replicas: int = 3,
    min_replicas: int = 0,
    states: dict[int, MemberState] | None = None,
) -> common_pb2.Ring:
    states = states or {}
    members = tuple(
        Member(s.server_id, s.addr, 1, "", states.get(s.server_id, MemberState.UP))
        for s in servers
    )
    config = RingConfig(epoch, members, replicas=replicas, min_replicas=min_replicas)
    return config_to_proto(config)


@contextlib.asynccontextmanager
async def local_data_servers(count: int, base_dir: Path) -> AsyncIterator[list[LocalDataServer]]:
    """start_local_data_servers, stopped when the block ends."""
    servers = await start_local_data_servers(count, base_dir)
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop()


@contextlib.asynccontextmanager
async def stand_in_cluster_service(
    servicer: meta_pb2_grpc.ClusterServicer,
) -> AsyncIterator[LeaderChannels]:
    """A Cluster service played by `servicer` on a loopback port, and leader channels
    to it, closed when the block ends."""
    server = GrpcServer("127.0.0.1:0", None)
    server.add(lambda s: meta_pb2_grpc.add_ClusterServicer_to_server(servicer, s))
    await server.start()
    channels = LeaderChannels([f"127.0.0.1:{server.port}"], None,
                              RetryPolicy(deadline_s=5, attempt_timeout_s=2))
    try:
        yield channels
    finally:
        await channels.close()
        await server.stop(0)


# -- a stand-in metadata service for unit tests ------------------------------------------


@dataclass
class FakeMeta:
    """Just enough of the metadata service for dfs.client.data: a ring, id ranges,
    block maps with newest-last slices, sizes. Implements MetaForData."""

    current_ring: common_pb2.Ring
    next_id: int = 1000
    blocks: dict[int, dict[int, list[common_pb2.Slice]]] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    ring_fetches: int = 0
    map_fetches: int = 0
    session_ids_from: int = 0  # ids below this belong to an expired session
    refused_commits: int = 0

    def expire_session(self) -> None:
        """The client's session expired: its allocated ids are no longer its own."""
        self.session_ids_from = self.next_id

    async def ring(self, known_epoch: int = 0) -> common_pb2.Ring:
        self.ring_fetches += 1
        return self.current_ring

    async def alloc_chunk_ids(self, count: int) -> tuple[int, int]:
        first = self.next_id
        self.next_id += count
        return first, count

    async def commit(
        self,
        caller: common_pb2.Caller,
        ino: int,
        updates: list[meta_pb2.BlockUpdate],
        end: int,
    ) -> common_pb2.Attr:
        if ino <= 0:
            raise OSError(errno.ENOENT, "no such inode")
        if any(s.chunk_id < self.session_ids_from for u in updates for s in u.slices):
            self.refused_commits += 1
            raise OSError(errno.ESTALE, "chunk ids of an expired session")
        file_blocks = self.blocks.setdefault(ino, {})
        for update in updates:
            file_blocks.setdefault(update.block, []).extend(update.slices)
        self.sizes[ino] = max(self.sizes.get(ino, 0), end)
        await asyncio.sleep(0)
        return common_pb2.Attr(ino=ino, size=self.sizes[ino])

    async def block_maps(
        self, caller: common_pb2.Caller, ino: int, first_block: int = 0, count: int = 0
    ) -> meta_pb2.GetBlockMapReply:
        self.map_fetches += 1
        file_blocks = self.blocks.get(ino, {})
        maps = [
            common_pb2.BlockMap(block=block, slices=file_blocks[block])
            for block in sorted(file_blocks)
            if block >= first_block and (count == 0 or block < first_block + count)
        ]
        return meta_pb2.GetBlockMapReply(blocks=maps, size=self.sizes.get(ino, 0))


# -- real `dfs data` processes -----------------------------------------------------------


@dataclass
class DataCluster:
    """N `dfs data` processes registered with a MetaCluster."""

    meta: MetaCluster
    addrs: dict[int, str]
    data_dirs: dict[int, Path]
    extra_args: list[str] = field(default_factory=list)
    launcher: dict[int, list[str]] = field(default_factory=dict)  # as MetaCluster's
    servers: dict[int, ServerProcess] = field(default_factory=dict)

    def start(self, server_id: int, *more_args: str) -> ServerProcess:
        argv = [*self.launcher.get(server_id, []), *DFS, "data", "--id", str(server_id),
                "--listen", self.addrs[server_id],
                "--meta", ",".join(self.meta.addr_list), "--data-dir",
                str(self.data_dirs[server_id]), "--secret", str(self.meta.secret_file),
                *self.extra_args, *more_args]
        proc = self.meta.procs.start(f"data{server_id}", argv, addr=self.addrs[server_id],
                                     data_dir=self.data_dirs[server_id])
        self.servers[server_id] = proc
        return proc

    def start_all(self) -> None:
        for server_id in sorted(self.addrs):
            self.start(server_id)
        for proc in self.servers.values():
            proc.wait_healthy(timeout_s=30)

    def kill(self, server_id: int) -> None:
        self.servers[server_id].kill()


def stop_all_at_once(procs: ProcessSet, timeout_s: float = 10.0) -> dict[str, int]:
    """SIGTERM every process of the set together, then wait for each (SIGKILL past
    the timeout): shutdown costs the slowest process, not the sum of all."""
    for proc in procs.procs:
        if proc.alive():
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    codes: dict[str, int] = {}
    for proc in procs.procs:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.signal(signal.SIGKILL)
            proc.popen.wait(timeout=timeout_s)
        codes[proc.name] = proc.popen.returncode
    return codes


def make_data_cluster(
    meta: MetaCluster, count: int = 4, base_dir: Path | None = None,
    extra_args: list[str] | None = None,
) -> DataCluster:
    base = base_dir or meta.procs.base_dir
    addrs = dict(enumerate(free_addrs(count), start=1))
    dirs = {i: base / f"data{i}" for i in addrs}
    return DataCluster(meta, addrs, dirs, list(extra_args or []))


# -- files and copies in a real cluster ----------------------------------------------------

SETTLE_WITHIN_S = 60.0  # background passes run every second or two; generous under load


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     within_s: float = SETTLE_WITHIN_S) -> None:
    """Poll `check` until it holds; AssertionError naming `what` past within_s."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(0.5)



@dataclass(frozen=True)
class WrittenFile:
    ino: int
    seed: int
    size: int

    def content(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


async def open_client(cluster: DataCluster) -> tuple[MetaClient, FileData]:
    meta = MetaClient(cluster.meta.addr_list, cluster.meta.secret, POLICY, client_name="test")
    await meta.open()
    # Generous: other tests and benchmarks share the machine, and a slow upload that
    # times out is a spurious failure, not a finding.
    return meta, FileData(meta, cluster.meta.secret, call_timeout_s=30.0)


def run_with_client(cluster: DataCluster,
                    body: Callable[[MetaClient, FileData], Awaitable[None]],
                    stop_after: bool = True) -> None:
    """Run body with an open client, then close it and (unless a module shares the
    cluster: stop_after=False) stop every process of the test together."""
    async def main() -> None:
        client, files = await open_client(cluster)
        try:
            await body(client, files)
        finally:
            with contextlib.suppress(Exception):
                await files.close()
            await client.close()

    try:
        asyncio.run(main())
    finally:
        if stop_after:
            stop_all_at_once(cluster.meta.procs)


async def write_file(meta: MetaClient, files: FileData, name: str, seed: int,
                     size: int) -> tuple[WrittenFile, list[int]]:
    """A new file of `size` seeded bytes; its chunk ids. Asserts R = 3 durable copies."""
    attr = await meta.create(ROOT, ROOT_INO, name.encode(), 0o644)
    written = WrittenFile(attr.ino, seed, size)
    result = await files.write(ROOT, attr.ino, 0, written.content())
    if size:
        assert result.attr is not None and result.attr.size == size
    for chunk in result.chunks:
        assert len(set(chunk.durable_at)) == 3 and not chunk.under_replicated
    return written, [chunk.chunk_id for chunk in result.chunks]


async def assert_all_read_back(files: FileData, written: list[WrittenFile]) -> None:
    for item in written:
        got = await files.read(ROOT, item.ino, 0, item.size + 1)
        assert got == item.content(), f"inode {item.ino} ({item.size} bytes) differs"


async def chunks_of(client: MetaClient, ino: int) -> list[int]:
    """Chunk ids the file's block maps name now."""
    reply = await client.block_maps(ROOT, ino)
    return [piece.chunk_id for block in reply.blocks for piece in block.slices]


async def holders_of(cluster: DataCluster, chunk_ids: Sequence[int],
                     server_ids: Sequence[int]) -> dict[int, set[int]]:
    """chunk id -> ids of the given data servers holding a verified copy."""
    found: dict[int, set[int]] = {chunk_id: set() for chunk_id in chunk_ids}
    for server_id in server_ids:
        async with aio_channel(cluster.addrs[server_id], cluster.meta.secret) as channel:
            for first in range(0, len(chunk_ids), 1000):
                part = list(chunk_ids[first : first + 1000])
                reply = await data_pb2_grpc.DataStub(channel).HasChunks(
                    data_pb2.HasChunksRequest(chunk_ids=part, verify=True), timeout=30)
                for chunk_id, present in zip(part, reply.present, strict=True):
                    if present:
                        found[chunk_id].add(server_id)
    return found


async def holders(cluster: DataCluster, chunk_id: int, alive: set[int]) -> set[int]:
    """Ids of live data servers holding a verified copy."""
    return (await holders_of(cluster, [chunk_id], sorted(alive)))[chunk_id]


def flip_byte_in_copy(data_dir: Path, chunk_id: int) -> None:
    path = _chunk_path(data_dir / "store", chunk_id)
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(os.path.getsize(path) - 1000)
        original = chunk_file.read(1)
        chunk_file.seek(-1, os.SEEK_CUR)
        chunk_file.write(bytes([original[0] ^ 0x10]))


def _chunk_path(store_dir: Path, chunk_id: int) -> Path:
    # The store's layout (dfs/data/store.py): chunks/<low byte>/<second byte>/<hex id>.
    # Opening a ChunkStore on a live server's dir to ask would tidy its temp files.
    return (store_dir / "chunks" / f"{chunk_id & 0xFF:02x}" / f"{(chunk_id >> 8) & 0xFF:02x}"
            / f"{chunk_id:016x}")


def admin(meta: MetaCluster, *words: str, timeout_s: float = 60.0) -> tuple[int, object]:
    """`dfs admin --json WORDS...` against the cluster: (exit status, parsed output or
    the raw text when it is not JSON)."""
    argv = [*DFS, "admin", "--meta", ",".join(meta.addr_list), "--secret",
            str(meta.secret_file), "--json", *words]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, done.stdout + done.stderr


# -- a writer that stops between upload and commit (run as a process) -------------------


async def stalled_writer(meta_addrs: str, secret_path: str, report_path: str) -> None:
    """Create a file, upload one chunk for it, report, SIGSTOP itself; once continued,
    try to commit the chunk and report the outcome (an errno name or "committed")."""
    secret = read_secret(Path(secret_path))
    client = MetaClient(meta_addrs.split(","), secret, POLICY, client_name="stalled-writer")
    await client.open()
    files = FileData(client, secret, call_timeout_s=10.0)
    report = Path(report_path)
    data = random.Random(7).randbytes(300_000)
    attr = await client.create(ROOT, ROOT_INO, b"stalled", 0o644)
    stored = await files.write_chunk(data)
    _write_report(report, {"phase": "uploaded", "chunk_id": stored.chunk_id, "ino": attr.ino})
    os.kill(os.getpid(), signal.SIGSTOP)
    update = meta_pb2.BlockUpdate(block=0, slices=[common_pb2.Slice(
        offset=0, length=len(data), chunk_id=stored.chunk_id, offset_in_chunk=0,
        epoch=stored.epoch)])
    try:
        await client.commit(ROOT, attr.ino, [update], len(data))
        outcome = "committed"
    except OSError as err:
        outcome = errno.errorcode.get(err.errno or 0, str(err))
    _write_report(report, {"phase": "done", "outcome": outcome})
    await files.close()
    await client.close()


def _write_report(report: Path, content: dict[str, object]) -> None:
    """Whole or absent for a reader polling it: written aside, then renamed."""
    aside = report.with_suffix(".tmp")
    aside.write_text(json.dumps(content))
    aside.replace(report)


if __name__ == "__main__" and sys.argv[1:2] == ["stalled-writer"]:
    asyncio.run(stalled_writer(*sys.argv[2:5]))
