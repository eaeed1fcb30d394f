"""File data through real mounts of one `dfs up` cluster: large files by sha256,
holes, overwrites inside a block, truncate down and up, and what a second mount of the
same cluster sees (close-to-open, renames after the attribute timeout, unlinked files
kept while open, disjoint writers, a reader during a rewrite).

Reads that must come from the cluster are made on the second mount, whose kernel
page cache never held the bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.posix.mounts import ExtraMount, extra_mount, running_cluster
from tests.support.local_cluster import LocalCluster

pytestmark = pytest.mark.fuse

MIB = 1 << 20
BLOCK = 4 * MIB  # the cluster's default block size
PIECE = 4 * MIB
ATTR_TIMEOUT_S = 1.0  # the mounts' default attr_timeout
MAX_FILE_SIZE = (1 << 63) - 1


@dataclass
class Mounts:
    cluster: LocalCluster
    a: Path  # the mount `dfs up` made
    b: Path  # a second mount of the same cluster
    b_mount: ExtraMount


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounts]:
    base = tmp_path_factory.mktemp("files")
    with running_cluster(base) as cluster, extra_mount(cluster, base / "b", "") as second:
        yield Mounts(cluster, cluster.mount, second.path, second)


def pieces(seed: int, size: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left:
        piece = rng.randbytes(min(PIECE, left))
        left -= len(piece)
        yield piece


def write_stream(path: Path, seed: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for piece in pieces(seed, size):
            out.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def sha256_of(path: Path) -> tuple[str, int]:
    digest, length = hashlib.sha256(), 0
    with path.open("rb") as source:
        while piece := source.read(PIECE):
            digest.update(piece)
            length += len(piece)
    return digest.hexdigest(), length


def pread_all(path: Path) -> bytes:
    return path.read_bytes()


# ---- large files and data layout --------------------------------------------------------


def check_large_file(mounts: Mounts, name: str, size: int) -> None:
    written = write_stream(mounts.a / name, seed=size, size=size)
    assert os.stat(mounts.b / name).st_size == size
    assert sha256_of(mounts.b / name) == (written, size)
    (mounts.a / name).unlink()


@pytest.mark.timeout(120)
def test_256_mib_file_reads_back_by_sha256(mounts: Mounts) -> None:
    check_large_file(mounts, "large-256m.bin", 256 * MIB)


@pytest.mark.long
@pytest.mark.timeout(600)
def test_1_gib_file_reads_back_by_sha256(mounts: Mounts) -> None:
    check_large_file(mounts, "large-1g.bin", 1024 * MIB)


def test_holes_read_as_zeros(mounts: Mounts) -> None:
    path = mounts.a / "holes.bin"
    with path.open("wb") as out:
        out.seek(BLOCK + 5)
        out.write(b"mid")
        out.seek(3 * BLOCK - 1)
        out.write(b"e")
    expected = bytearray(3 * BLOCK)
    expected[BLOCK + 5 : BLOCK + 8] = b"mid"
    expected[-1:] = b"e"
    assert pread_all(mounts.b / "holes.bin") == expected
    os.truncate(path, 5 * BLOCK + 7)  # a hole made by growing the file
    expected += bytes(2 * BLOCK + 7)
    assert pread_all(mounts.b / "holes.bin") == expected
    fd = os.open(mounts.b / "holes.bin", os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 4 * BLOCK) == bytes(100)
        assert os.pread(fd, 100, 5 * BLOCK + 7) == b""  # at the end
    finally:
        os.close(fd)


def test_random_overwrites_inside_one_block(mounts: Mounts) -> None:
    rng = random.Random(19)
    model = bytearray(rng.randbytes(BLOCK))
    path = mounts.a / "overwrites.bin"
    path.write_bytes(model)
    fd = os.open(path, os.O_RDWR)
    try:
        for step in range(60):
            offset = rng.randrange(BLOCK - 1)
            data = rng.randbytes(rng.randint(1, min(70_000, BLOCK - offset)))
            assert os.pwrite(fd, data, offset) == len(data)
            model[offset : offset + len(data)] = data
            if step % 20 == 19:  # the handle reads its own writes
                check_at = rng.randrange(BLOCK - 4096)
                assert os.pread(fd, 4096, check_at) == model[check_at : check_at + 4096]
            if step % 25 == 24:  # committed slices pile up on the block
                os.fsync(fd)
    finally:
        os.close(fd)
    assert os.stat(mounts.b / "overwrites.bin").st_size == BLOCK
    assert pread_all(mounts.b / "overwrites.bin") == model


def test_truncate_down_and_up(mounts: Mounts) -> None:
    original = random.Random(7).randbytes(2 * BLOCK + 1000)
    path = mounts.a / "truncate.bin"
    path.write_bytes(original)
    os.truncate(path, BLOCK + 3)
    assert pread_all(mounts.b / "truncate.bin") == original[: BLOCK + 3]
    os.truncate(path, 3 * BLOCK)
    expected = original[: BLOCK + 3] + bytes(3 * BLOCK - (BLOCK + 3))
    assert pread_all(mounts.b / "truncate.bin") == expected
    # ftruncate on an open handle with buffered writes: the cut applies to them too.
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"z" * 100, 50)
        os.ftruncate(fd, 60)
        os.pwrite(fd, b"end", 100)
    finally:
        os.close(fd)
    expected = original[:50] + b"z" * 10 + bytes(40) + b"end"
    assert pread_all(mounts.b / "truncate.bin") == expected
    assert pread_all(path) == expected


def test_file_size_limits_are_linuxs(mounts: Mounts) -> None:
    """dfs's maximum file size is the kernel's (2**63 - 1): a write ending there works;
    one past it never reaches dfs (the kernel says EINVAL, as on tmpfs); a write past
    the caller's RLIMIT_FSIZE is EFBIG and changes nothing."""
    path = mounts.a / "max-size.bin"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        assert os.pwrite(fd, b"x", MAX_FILE_SIZE - 1) == 1
        with pytest.raises(OSError) as raised:
            os.pwrite(fd, b"y", MAX_FILE_SIZE)
        assert raised.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert os.stat(mounts.b / "max-size.bin").st_size == MAX_FILE_SIZE
    back = os.open(mounts.b / "max-size.bin", os.O_RDONLY)
    try:
        assert os.pread(back, 1, MAX_FILE_SIZE - 1) == b"x"
        assert os.pread(back, 10, MIB) == bytes(10)
    finally:
        os.close(back)
    limited = subprocess.run(
        [sys.executable, "-c", RLIMIT_WRITE, str(mounts.a / "limited.bin")],
        capture_output=True, text=True, timeout=60,
    )
    assert limited.stdout.strip() == "EFBIG", limited.stderr
    assert (mounts.b / "limited.bin").read_bytes() == b"a" * 4096


RLIMIT_WRITE = """
import errno, os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"a" * 4096)
try:
    os.write(fd, b"b")
except OSError as err:
    print(errno.errorcode[err.errno])
os.close(fd)
"""


# ---- two mounts -------------------------------------------------------------------------


def test_write_close_on_a_then_open_on_b_sees_new_bytes(mounts: Mounts) -> None:
    a, b = mounts.a / "cto.bin", mounts.b / "cto.bin"
    a.write_bytes(b"old" * 10)
    assert b.read_bytes() == b"old" * 10  # B caches attributes and pages
    new = random.Random(3).randbytes(BLOCK + 17)
    a.write_bytes(new)
    assert b.read_bytes() == new  # no wait: open revalidates
    with a.open("r+b") as same_size:
        same_size.write(b"NEW")
    assert b.read_bytes() == b"NEW" + new[3:]
    os.truncate(a, 5)
    assert b.read_bytes() == b"NEW" + new[3:5]


def test_rename_on_a_visible_on_b_after_attribute_timeout(mounts: Mounts) -> None:
    (mounts.a / "before").write_bytes(b"renamed")
    assert (mounts.b / "before").read_bytes() == b"renamed"
    os.rename(mounts.a / "before", mounts.a / "after")
    time.sleep(ATTR_TIMEOUT_S + 0.5)
    assert not (mounts.b / "before").exists()
    assert (mounts.b / "after").read_bytes() == b"renamed"
    assert "after" in os.listdir(mounts.b)


def test_file_unlinked_on_b_keeps_reading_on_a(mounts: Mounts) -> None:
    content = random.Random(5).randbytes(BLOCK + MIB)
    (mounts.a / "held.bin").write_bytes(content)
    with (mounts.a / "held.bin").open("rb", buffering=0) as held:
        assert held.read(4096) == content[:4096]
        (mounts.b / "held.bin").unlink()
        assert not (mounts.b / "held.bin").exists()
        time.sleep(1)  # room for the leader to collect what no one holds
        rest = b""
        while piece := held.read(MIB):
            rest += piece
        assert rest == content[4096:]
    time.sleep(ATTR_TIMEOUT_S + 0.5)
    assert not (mounts.a / "held.bin").exists()


def test_two_mounts_writing_disjoint_ranges_keep_both(mounts: Mounts) -> None:
    size = 2 * BLOCK
    (mounts.a / "disjoint.bin").touch()
    os.truncate(mounts.a / "disjoint.bin", size)
    first = random.Random(11).randbytes(MIB)
    second = random.Random(12).randbytes(MIB)
    third = random.Random(13).randbytes(1000)
    fa = os.open(mounts.a / "disjoint.bin", os.O_WRONLY)
    fb = os.open(mounts.b / "disjoint.bin", os.O_WRONLY)
    try:
        os.pwrite(fa, first, 0)
        os.pwrite(fb, second, MIB)  # same block as A's range
        os.pwrite(fb, third, BLOCK + 10)  # another block
    finally:
        os.close(fa)
        os.close(fb)
    expected = bytearray(size)
    expected[:MIB] = first
    expected[MIB : 2 * MIB] = second
    expected[BLOCK + 10 : BLOCK + 1010] = third
    assert pread_all(mounts.a / "disjoint.bin") == expected
    assert pread_all(mounts.b / "disjoint.bin") == expected


@pytest.mark.timeout(90)
def test_reader_on_b_during_rewrite_on_a_sees_old_or_new(mounts: Mounts) -> None:
    size = 2 * BLOCK  # two blocks: one commit covers both
    versions = [bytes([65 + v]) * size for v in range(5)]
    (mounts.a / "rewrite.bin").write_bytes(versions[0])
    seen: list[bytes] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append((mounts.b / "rewrite.bin").read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in versions[1:]:
            fd = os.open(mounts.a / "rewrite.bin", os.O_WRONLY)
            try:
                os.write(fd, version)
            finally:
                os.close(fd)
            time.sleep(0.1)
    finally:
        done.set()
        thread.join(timeout=60)
    assert seen
    mixed = [i for i, got in enumerate(seen) if got not in versions]
    assert not mixed, f"{len(mixed)} of {len(seen)} reads mixed versions"
    assert (mounts.b / "rewrite.bin").read_bytes() == versions[-1]


# ---- names and the local cluster ---------------------------------------------------------


def test_name_of_256_bytes_is_enametoolong(mounts: Mounts) -> None:
    longest = mounts.a / ("n" * 255)
    longest.write_bytes(b"ok")
    assert (mounts.b / ("n" * 255)).read_bytes() == b"ok"
    for make in (lambda p: p.write_bytes(b"x"), lambda p: p.mkdir(), lambda p: p.stat()):
        with pytest.raises(OSError) as raised:
            make(mounts.a / ("n" * 256))
        assert raised.value.errno == errno.ENAMETOOLONG


def test_non_utf8_names_work(mounts: Mounts) -> None:
    base = os.fsencode(mounts.a)
    names = [b"caf\xe9", b"\xff\xfe", b"a\x80b", "ünï".encode()]
    os.mkdir(base + b"/" + b"bytes\xff")
    for name in names:
        with open(base + b"/bytes\xff/" + name, "wb") as out:
            out.write(name)
    listed = sorted(os.listdir(os.fsencode(mounts.b) + b"/bytes\xff"))
    assert listed == sorted(names)
    for name in names:
        with open(os.fsencode(mounts.b) + b"/bytes\xff/" + name, "rb") as back:
            assert back.read() == name
    os.rename(base + b"/bytes\xff/" + names[0], base + b"/bytes\xff/" + b"\xc0\xc1")
    assert os.path.exists(base + b"/bytes\xff/\xc0\xc1")


def test_paths_near_path_max(mounts: Mounts) -> None:
    """A path of 4000+ bytes works component by component (relative to a directory
    fd) and whole; beyond PATH_MAX the kernel refuses it with ENAMETOOLONG."""
    component = "d" * 200
    depth = 20  # 20 * 201 bytes below the mount
    fd = os.open(mounts.a, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(component, dir_fd=fd)
            inner = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(leaf, b"deep")
        os.close(leaf)
    finally:
        os.close(fd)
    relative = "/".join([component] * depth) + "/leaf"
    assert 4000 < len(relative) < 4096
    os.chdir(mounts.b)
    try:
        assert Path(relative).read_bytes() == b"deep"
        with pytest.raises(OSError) as raised:
            Path(relative + "/" + "x" * 200).stat()
        assert raised.value.errno == errno.ENAMETOOLONG  # past PATH_MAX
    finally:
        os.chdir("/")


def test_dfs_up_twice_is_one_cluster(mounts: Mounts) -> None:
    before = mounts.cluster.record()
    again = mounts.cluster.up()
    assert "already running" in again.stdout
    assert mounts.cluster.record() == before
    (mounts.a / "still-here").write_bytes(b"one cluster")
    assert (mounts.b / "still-here").read_bytes() == b"one cluster"
