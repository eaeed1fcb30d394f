"""Kernel caches across two mounts of one cluster: close-to-open over many rounds
(the reader's kernel keeps its page cache only while the file is unchanged, and never
serves bytes older than the writer's last close before the reader's open), and
negative entries (cached "no such name" for the negative timeout, none with 0)."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.posix.mounts import extra_mount, running_cluster
from tests.support.local_cluster import LocalCluster

pytestmark = pytest.mark.fuse

ROUNDS = 1000
FILES = 8  # files written and read side by side, each by its own thread
PAGE = 4096


@dataclass
class Mounts:
    cluster: LocalCluster
    a: Path
    b: Path  # a second mount that caches no negative entries


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounts]:
    base = tmp_path_factory.mktemp("cache")
    with running_cluster(base) as cluster, extra_mount(cluster, base / "b",
                                                       "negative_timeout=0") as second:
        yield Mounts(cluster, cluster.mount, second.path)


def read_all(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while piece := os.read(fd, 1 << 20):
            chunks.append(piece)
        return b"".join(chunks)
    finally:
        os.close(fd)


def close_to_open_rounds(mounts: Mounts, name: str, rounds: int, seed: int) -> None:
    """Write+close on A, then open+read on B, `rounds` times. Sizes repeat (a rewrite
    of the same size changes only mtime) and B reads every round, so its page cache
    holds the previous round's bytes whenever it is wrongly kept."""
    rng = random.Random(seed)
    writer_path, reader_path = mounts.a / name, mounts.b / name
    for round_number in range(rounds):
        size = rng.choice((PAGE, PAGE, 3 * PAGE + 17, 100))
        content = round_number.to_bytes(4, "big") + rng.randbytes(size - 4)
        fd = os.open(writer_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            assert os.write(fd, content) == size
        finally:
            os.close(fd)
        got = read_all(reader_path)
        assert got == content, (
            f"{name} round {round_number}: B read {len(got)} bytes starting "
            f"{got[:4].hex()}, A closed {size} bytes starting {content[:4].hex()}")


def test_close_to_open_holds_for_every_round(mounts: Mounts) -> None:
    """ROUNDS rounds, over FILES files side by side (each file's rounds in order)."""
    started = time.monotonic()
    with ThreadPoolExecutor(FILES) as pool:
        done = [pool.submit(close_to_open_rounds, mounts, f"close-to-open-{index}",
                            ROUNDS // FILES, index) for index in range(FILES)]
        for future in done:
            future.result()
    elapsed = time.monotonic() - started
    print(f"\n{ROUNDS} close-to-open rounds over {FILES} files: {elapsed:.1f} s")


def test_unchanged_file_keeps_the_readers_page_cache(mounts: Mounts) -> None:
    """An open of a file nobody changed keeps the kernel's pages: with every data
    server stopped, B reads it again from its page cache. A change on A is seen at
    B's next open."""
    path_a, path_b = mounts.a / "kept", mounts.b / "kept"
    first = random.Random(1).randbytes(1 << 20)
    path_a.write_bytes(first)
    assert read_all(path_b) == first
    data_pids = [int(str(server["pid"])) for server in mounts.cluster.record()["data"]]
    try:
        for pid in data_pids:
            os.kill(pid, signal.SIGSTOP)
        assert read_all(path_b) == first  # no chunk read: the pages were kept
    finally:
        for pid in data_pids:
            os.kill(pid, signal.SIGCONT)
    second = random.Random(2).randbytes(1 << 20)
    path_a.write_bytes(second)
    assert read_all(path_b) == second


def test_negative_entries(mounts: Mounts) -> None:
    """A (default negative_timeout) caches "no such name" for a while; B
    (negative_timeout=0) sees a name created on the other mount at its next lookup."""
    for mount in (mounts.a, mounts.b):
        assert not (mount / "appears").exists()
    (mounts.a / "appears").write_bytes(b"a")
    (mounts.a / "from-b").exists()  # A now caches its absence
    assert (mounts.b / "appears").read_bytes() == b"a"  # no negative entry on B
    (mounts.b / "from-b").write_bytes(b"b")
    deadline = time.monotonic() + 30  # A's negative entry expires (default 1 s)
    while not (mounts.a / "from-b").exists():
        assert time.monotonic() < deadline, "A never saw a name created on B"
        time.sleep(0.1)
    assert (mounts.a / "from-b").read_bytes() == b"b"
    (mounts.a / "from-b").unlink()
    try:
        os.stat(mounts.a / "from-b")
    except OSError as err:
        assert err.errno == errno.ENOENT
    else:
        raise AssertionError("an unlinked name is still found on its own mount")
