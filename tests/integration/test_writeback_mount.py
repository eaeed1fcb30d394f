"""Write-back through a real mount: thousands of random 4 KiB writes into a 64 MiB file
are buffered, coalesced and committed by one fsync (one chunk per block touched, one
commit), and a second mount, whose page cache never held the bytes, reads back exactly
what a local model holds. The writer's mount then compacts the blocks those writes
left with hundreds of slices each, in the background: every block ends with at most
max_slices (counted through the metadata API) and the same bytes. The fsync's time is
printed, not asserted. Then a data server is killed while a writer's uploads are in
flight: nothing acknowledged is lost."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.client.tuning import ClientTuning
from dfs.fuse.mount import cluster_target
from tests.posix.mounts import extra_mount, running_cluster
from tests.support.data_cluster import ROOT, eventually
from tests.support.local_cluster import LocalCluster

pytestmark = pytest.mark.fuse

MIB = 1 << 20
FILE_SIZE = 64 * MIB
PIECE = 4096
WRITES = 3000  # 12 MiB at most: under the 16 MiB buffer, so the fsync commits them all


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("writeback")) as running:
        yield running


def test_random_4k_writes_then_fsync_read_back_on_another_mount(cluster: LocalCluster) -> None:
    rng = random.Random(21)
    model = bytearray(rng.randbytes(FILE_SIZE))
    path = cluster.mount / "random-writes"
    path.write_bytes(model)

    fd = os.open(path, os.O_WRONLY)
    try:
        started = time.monotonic()
        for _ in range(WRITES):
            offset = rng.randrange(0, FILE_SIZE - PIECE)
            piece = rng.randbytes(PIECE)
            assert os.pwrite(fd, piece, offset) == PIECE
            model[offset : offset + PIECE] = piece
        written = time.monotonic()
        os.fsync(fd)
        synced = time.monotonic()
    finally:
        os.close(fd)
    print(f"\n{WRITES} random 4 KiB writes: {written - started:.2f} s; "
          f"fsync: {synced - written:.2f} s")

    assert path.stat().st_size == FILE_SIZE
    base = Path(str(cluster.mount) + "-b")
    with extra_mount(cluster, base, "") as second, open(second.path / "random-writes",
                                                         "rb") as reader:
        started = time.monotonic()
        got = reader.read()
        print(f"read back on a second mount: {time.monotonic() - started:.2f} s")
    assert len(got) == FILE_SIZE
    assert got == bytes(model)
    asyncio.run(assert_compacted(cluster, path.stat().st_ino, bytes(model)))


async def assert_compacted(cluster: LocalCluster, ino: int, model: bytes) -> None:
    """Every block of the file comes down to max_slices (the mount compacts in the
    background), and the compacted file reads as the model, through the client
    library (no page cache or mount in the way)."""
    addrs, secret = cluster_target(argparse.Namespace(
        cluster=str(cluster.cluster_file), meta=None, secret=None, insecure=False))
    meta = MetaClient(addrs, secret, RetryPolicy(deadline_s=30), client_name="compaction-check")
    await meta.open()
    files = FileData(meta, secret, call_timeout_s=30.0, max_slices=0)
    counts: dict[int, int] = {}

    async def compacted() -> bool:
        reply = await meta.block_maps(ROOT, ino)
        counts.update({m.block: len(m.slices) for m in reply.blocks})
        return max(counts.values()) <= ClientTuning.max_slices

    try:
        await eventually(compacted, "every block within max_slices", within_s=180)
        print(f"slices per block after compaction: {sorted(counts.values())}")
        assert len(counts) == FILE_SIZE // (4 * MIB)
        assert await files.read(ROOT, ino, 0, FILE_SIZE + 1, cached=False) == model
    finally:
        await files.close()
        await meta.close()


def test_data_server_killed_while_uploads_are_in_flight(cluster: LocalCluster) -> None:
    """A writer streams 48 MiB (uploads run in the background as it writes); one data
    server is killed (-9) partway. Its fsync then succeeds (the failed copies went to
    the next live servers) or reports EIO, and a second mount reads every
    acknowledged byte back: the first fsynced 8 MiB always, everything after a
    successful fsync."""
    rng = random.Random(48)
    first = rng.randbytes(8 * MIB)
    rest = [rng.randbytes(MIB) for _ in range(40)]
    path = cluster.mount / "killed-during-upload"
    victim = int(str(cluster.record()["data"][0]["pid"]))  # type: ignore[index]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, first) == len(first)
        os.fsync(fd)  # acknowledged
        outcome = "ok"
        try:
            for index, piece in enumerate(rest):
                if index == 12:
                    os.kill(victim, signal.SIGKILL)
                assert os.write(fd, piece) == MIB
            os.fsync(fd)
        except OSError as err:
            assert err.errno == errno.EIO, err
            outcome = "EIO"
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    print(f"\nfsync after a data server was killed mid-upload: {outcome}")
    base = Path(str(cluster.mount) + "-c")
    with extra_mount(cluster, base, "") as second:
        got = (second.path / path.name).read_bytes()
    assert got[: len(first)] == first
    if outcome == "ok":
        assert got == first + b"".join(rest)
