"""`dfs up` / `dfs down` and the mount as a folder: files written, read back,
kept across a restart; a second `up` finds the running cluster."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfs.localcluster import alive
from tests.support.local_cluster import LocalCluster

pytestmark = pytest.mark.fuse


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse on this machine")
    local = LocalCluster(tmp_path / "cluster", tmp_path / "mnt")
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.mark.timeout(180)
def test_up_write_down_up_keeps_files(cluster: LocalCluster) -> None:
    mnt = cluster.mount
    payload = os.urandom(9 * 1024 * 1024 + 123)  # spans three 4 MiB blocks
    (mnt / "dir").mkdir()
    (mnt / "dir" / "big.bin").write_bytes(payload)
    (mnt / "small.txt").write_text("hello dfs\n")
    os.symlink("dir/big.bin", mnt / "link")
    assert (mnt / "link").read_bytes() == payload
    assert sorted(p.name for p in mnt.iterdir()) == ["dir", "link", "small.txt"]

    again = cluster.up()  # a running directory: says so, starts nothing
    assert "already running" in again.stdout

    stopped = cluster.down()
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.ismount(mnt)
    record = cluster.record()
    for proc in [*record["meta"], *record["data"], record["mount"]]:  # type: ignore[misc]
        assert not alive(proc["pid"]), f"{proc} still running after dfs down"

    cluster.up()
    assert hashlib.sha256((mnt / "dir" / "big.bin").read_bytes()).digest() == hashlib.sha256(
        payload).digest()
    assert (mnt / "small.txt").read_text() == "hello dfs\n"
    status = cluster.dfs("admin", "--cluster", str(cluster.cluster_file), "meta", "status")
    assert status.returncode == 0, status.stderr
