"""Faults under a real mount: 3 `dfs meta` (3 s sessions) + 4 `dfs data` processes whose
data dirs share one small tmpfs, mounted with `dfs mount`. kill -9 of a data server
during reads, kill -9 of the metadata leader during a tree copy, a mount SIGSTOPped past
its session timeout, and a full data disk. Every acknowledged write is checked byte for
byte afterwards. The tests run in file order: the full disk comes last.
"""

from __future__ import annotations

import errno
import filecmp
import hashlib
import json
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dfs.auth import init_cluster_dir
from tests.posix.mounts import ExtraMount
from tests.support.data_cluster import DataCluster, make_data_cluster
from tests.support.meta_cluster import MetaCluster, make_meta_cluster
from tests.support.procs import ProcessSet

pytestmark = pytest.mark.fuse

MIB = 1 << 20
SESSION_TIMEOUT_MS = 3000
TMPFS_SIZE = "160m"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class FaultCluster:
    meta: MetaCluster
    data: DataCluster
    cluster_file: Path
    mount: ExtraMount
    base: Path

    @property
    def mnt(self) -> Path:
        return self.mount.path


def mount_tmpfs(path: Path) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700",
                           "dfs-test", str(path)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the data servers: {done.stderr.strip()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    base = tmp_path_factory.mktemp("faults")
    procs = ProcessSet(base_dir=base)
    small = base / "small"
    mount_tmpfs(small)
    mount: ExtraMount | None = None
    try:
        secret_file, _ = init_cluster_dir(base / "secret")
        meta = make_meta_cluster(procs, secret_file,
                                 extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)])
        meta.start_all()
        data = make_data_cluster(meta, base_dir=small)
        data.start_all()
        cluster_file = base / "cluster.json"
        cluster_file.write_text(json.dumps(
            {"meta": [{"addr": addr} for addr in meta.addr_list], "secret": str(secret_file)}))
        mount = ExtraMount(cluster_file, base / "mnt", "").start()
        yield FaultCluster(meta, data, cluster_file, mount, base)
    finally:
        if mount is not None:
            mount.stop()
        for proc in procs.procs:  # all stop at once; cleanup then waits for each
            proc.signal(signal.SIGTERM)
        procs.cleanup()
        done = subprocess.run(["umount", str(small)], capture_output=True, timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(small)], capture_output=True, timeout=30)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(120)
def test_data_server_killed_during_reads(cluster: FaultCluster) -> None:
    content = random.Random(1).randbytes(8 * MIB + 99)
    (cluster.mnt / "read-me.bin").write_bytes(content)
    results: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                results.append(sha((cluster.mnt / "read-me.bin").read_bytes()))
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.5)
        cluster.data.kill(2)
        before = len(results)
        deadline = time.monotonic() + 60
        while len(results) < before + 3 and not errors and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) >= before + 3, "reads stalled after the kill"
    assert set(results) == {sha(content)}
    cluster.data.start(2).wait_healthy(timeout_s=30)


@pytest.mark.timeout(120)
def test_meta_leader_killed_during_tree_copy(cluster: FaultCluster) -> None:
    source = REPO_ROOT / "dfs" / "meta"
    target = cluster.mnt / "tree"
    failures: list[BaseException] = []

    def copy() -> None:
        try:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        except BaseException as err:
            failures.append(err)

    leader = cluster.meta.leader()
    thread = threading.Thread(target=copy)
    thread.start()
    time.sleep(0.4)
    assert thread.is_alive(), "the copy finished before the kill: nothing was tested"
    cluster.meta.kill(leader)
    thread.join(timeout=100)
    assert not thread.is_alive(), "the copy hung after the leader died"
    assert not failures, failures
    compared = filecmp.dircmp(source, target, ignore=["__pycache__"])
    assert not compared.left_only and not compared.right_only and not compared.diff_files
    for name in compared.common_files:  # dircmp compares stat signatures; check bytes
        assert (source / name).read_bytes() == (target / name).read_bytes(), name
    assert cluster.meta.leader(exclude={leader}) != leader
    cluster.meta.start(leader).wait_healthy(timeout_s=30)


@pytest.mark.timeout(120)
def test_mount_stopped_past_session_timeout_harms_no_one_elses_file(
    cluster: FaultCluster,
) -> None:
    stopped = ExtraMount(cluster.cluster_file, cluster.base / "stopped", "").start()
    try:
        theirs = {name: random.Random(name).randbytes(MIB + 7) for name in ("x", "y")}
        (stopped.path / "mine").write_bytes(b"before the stop")
        held = (stopped.path / "mine").open("r+b")
        held.write(b"buffered while stopped")  # sits in the mount's write buffer
        held.flush()
        stopped.signal(signal.SIGSTOP)
        try:
            time.sleep(SESSION_TIMEOUT_MS / 1000 * 2)
            for name, content in theirs.items():  # others keep writing meanwhile
                (cluster.mnt / name).write_bytes(content)
            (cluster.mnt / "mine").write_bytes(b"the other mount's bytes")
        finally:
            stopped.signal(signal.SIGCONT)
        late: list[str] = []
        try:
            held.close()  # the flush of the stopped mount's buffer
            late.append("closed")
        except OSError as err:
            late.append(errno.errorcode.get(err.errno or 0, "?"))
        try:
            (stopped.path / "later").write_bytes(b"after resuming")
            late.append("wrote")
        except OSError as err:
            late.append(errno.errorcode.get(err.errno or 0, "?"))
        for name, content in theirs.items():
            assert (cluster.mnt / name).read_bytes() == content, name
        # Its own file: the other mount's bytes, or its late write over them (the
        # newest write wins for the bytes it covers), never anything else.
        other, late_write = b"the other mount's bytes", b"buffered while stopped"
        mine = (cluster.mnt / "mine").read_bytes()
        assert mine in (other, late_write + other[len(late_write):]), (mine, late)
        assert (mine != other) == (late[0] == "closed"), (mine, late)
        if late[-1] == "wrote":
            assert (cluster.mnt / "later").read_bytes() == b"after resuming"
    finally:
        assert stopped.stop() is not None


@pytest.mark.timeout(120)
def test_request_past_its_deadline_is_eio_and_the_mount_recovers(cluster: FaultCluster) -> None:
    """All metadata servers frozen for longer than the mount's request deadline (but
    shorter than a session): a lookup fails with EIO; once they resume, the same mount
    works again."""
    quick = ExtraMount(cluster.cluster_file, cluster.base / "deadline", "deadline=1").start()
    try:
        (quick.path / "before").write_bytes(b"before the freeze")
        for node_id in cluster.meta.replicas:
            cluster.meta.pause(node_id)
        try:
            with pytest.raises(OSError) as raised:
                (quick.path / "never-looked-up").stat()
            assert raised.value.errno == errno.EIO
        finally:
            for node_id in cluster.meta.replicas:
                cluster.meta.resume(node_id)
        (quick.path / "after").write_bytes(b"after the freeze")
        assert (cluster.mnt / "after").read_bytes() == b"after the freeze"
        assert (cluster.mnt / "before").read_bytes() == b"before the freeze"
    finally:
        quick.stop()


@pytest.mark.timeout(120)
def test_full_data_disk_gives_enospc_and_keeps_earlier_files(cluster: FaultCluster) -> None:
    directory = cluster.mnt / "fill"
    directory.mkdir()
    written: dict[str, bytes] = {}
    with pytest.raises(OSError) as raised:
        for index in range(100):
            content = random.Random(index).randbytes(4 * MIB)
            (directory / f"f{index}").write_bytes(content)
            written[f"f{index}"] = content
    assert raised.value.errno == errno.ENOSPC
    assert len(written) >= 3, "the disk filled before the first files"
    for name, content in written.items():
        assert (directory / name).read_bytes() == content, name
    assert (cluster.mnt / "read-me.bin").stat().st_size == 8 * MIB + 99
