"""The lossy storage layer on a real FUSE mount: what was fsynced survives a simulated
power loss, what was not is dropped (bytes, sizes and names), and a full disk says
ENOSPC until space comes back."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfs.paxos.wal import fsync_dir
from tests.faults.lossydisk import LossyDisk

pytestmark = [pytest.mark.fuse, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LossyDisk]:
    """One mount for the module (each start costs seconds on a loaded machine)."""
    base = tmp_path_factory.mktemp("lossy")
    disk = LossyDisk(base / "backing", base / "mnt").start()
    try:
        yield disk
    finally:
        disk.stop()


@pytest.fixture
def disk(lossy: LossyDisk, request: pytest.FixtureRequest) -> LossyDisk:
    """The module's mount, everything durable, and a fresh durable directory as `mnt`."""
    (lossy.mountpoint / str(request.node.name)).mkdir()
    lossy.sync()
    return lossy


@pytest.fixture
def mnt(disk: LossyDisk, request: pytest.FixtureRequest) -> Path:
    return disk.mountpoint / str(request.node.name)


def write_file(path: Path, data: bytes, offset: int = 0, sync: bool = False,
               create: bool = True) -> None:
    flags = os.O_WRONLY | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o644)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_fsynced_bytes_survive_and_unsynced_ones_do_not(disk: LossyDisk, mnt: Path) -> None:
    write_file(mnt / "a", b"durable", sync=True)
    fsync_dir(mnt)
    write_file(mnt / "a", b"-lost tail", offset=7, create=False)  # grows, not fsynced
    write_file(mnt / "a", b"DUR", create=False)  # overwrites durable bytes, not fsynced
    write_file(mnt / "b", b"never fsynced")
    fsync_dir(mnt)  # b's name is durable, its bytes are not
    assert (mnt / "a").read_bytes() == b"DURable-lost tail"

    assert disk.power_loss() == "files=2 names=0"

    assert (mnt / "a").read_bytes() == b"durable"
    assert (mnt / "b").read_bytes() == b""


def test_truncate_without_fsync_is_undone(disk: LossyDisk, mnt: Path) -> None:
    write_file(mnt / "t", b"0123456789", sync=True)
    fsync_dir(mnt)
    os.truncate(mnt / "t", 3)
    disk.power_loss()
    assert (mnt / "t").read_bytes() == b"0123456789"


def test_names_need_their_directory_fsynced(disk: LossyDisk, mnt: Path) -> None:
    (mnt / "d").mkdir()
    fsync_dir(mnt)
    write_file(mnt / "d" / "old", b"old", sync=True)
    write_file(mnt / "d" / "gone", b"gone", sync=True)
    write_file(mnt / "d" / "target", b"target", sync=True)
    fsync_dir(mnt / "d")
    write_file(mnt / "d" / "new", b"fsynced, but its name is not", sync=True)
    os.rename(mnt / "d" / "old", mnt / "d" / "target")  # replaces target, dir not fsynced
    os.unlink(mnt / "d" / "gone")
    (mnt / "d" / "sub").mkdir()

    disk.power_loss()

    assert sorted(os.listdir(mnt / "d")) == ["gone", "old", "target"]
    assert (mnt / "d" / "old").read_bytes() == b"old"
    assert (mnt / "d" / "target").read_bytes() == b"target"
    assert (mnt / "d" / "gone").read_bytes() == b"gone"


def test_rename_is_durable_with_its_target_directory(disk: LossyDisk, mnt: Path) -> None:
    """The chunk store's protocol: a temp file, fsynced, renamed into another
    directory, that directory fsynced (the temp directory never is)."""
    for name in ("tmp", "chunks"):
        (mnt / name).mkdir()
    fsync_dir(mnt)
    write_file(mnt / "tmp" / "c.tmp", b"chunk", sync=True)
    os.rename(mnt / "tmp" / "c.tmp", mnt / "chunks" / "c")
    fsync_dir(mnt / "chunks")
    disk.power_loss()
    assert (mnt / "chunks" / "c").read_bytes() == b"chunk"
    assert os.listdir(mnt / "tmp") == []


def test_sync_makes_everything_durable(disk: LossyDisk, mnt: Path) -> None:
    write_file(mnt / "s", b"synced by sync(1)")
    disk.sync()
    disk.power_loss()
    assert (mnt / "s").read_bytes() == b"synced by sync(1)"


def test_full_disk_says_enospc_until_space_returns(disk: LossyDisk, mnt: Path) -> None:
    write_file(mnt / "f", b"before", sync=True)
    disk.set_full(True)
    with pytest.raises(OSError) as full:
        write_file(mnt / "f", b"more", offset=6, create=False)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as no_create:
        write_file(mnt / "g", b"x")
    assert no_create.value.errno == errno.ENOSPC
    assert os.statvfs(mnt).f_bavail == 0
    assert (mnt / "f").read_bytes() == b"before"
    disk.set_full(False)
    write_file(mnt / "f", b"more", offset=6, create=False, sync=True)
    assert (mnt / "f").read_bytes() == b"beforemore"
