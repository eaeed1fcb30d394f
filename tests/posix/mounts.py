"""Mounts for tests on real FUSE mounts: a `dfs up` cluster for a whole test module,
and extra `dfs mount --cluster` processes beside the one `dfs up` made (with options
`dfs up` does not pass, such as allow_other), stopped and checked at the end.

Every process started here carries the run token, so the session-end check finds any
that a test leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from dfs.localcluster import is_mounted
from tests.support.local_cluster import DFS, LocalCluster
from tests.support.procs import RUN_TOKEN, RUN_TOKEN_ENV

MOUNT_READY_S = 30.0
STOP_S = 20.0


class ExtraMount:
    """One `dfs mount --cluster FILE -o OPTIONS MOUNTPOINT` process."""

    def __init__(self, cluster_file: Path, mountpoint: Path, options: str = "allow_other") -> None:
        self.cluster_file = cluster_file
        self.path = mountpoint
        self.options = options
        self.log_path = mountpoint.parent / f"{mountpoint.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ExtraMount:
        self.path.mkdir(parents=True, exist_ok=True)
        options = ["-o", self.options] if self.options else []
        argv = [*DFS, "mount", *options, "--cluster", str(self.cluster_file), str(self.path)]
        env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + MOUNT_READY_S
        while not is_mounted(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mount at {self.path} did not come up:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> int | None:
        """Unmount (the process flushes and exits), SIGKILL if it will not, and make
        sure nothing stays mounted; returns the process's exit code."""
        if self.proc is None:
            return None
        self.signal(signal.SIGCONT)  # a stopped mount cannot answer the unmount
        if is_mounted(self.path) and self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True,
                           timeout=STOP_S)
        try:
            self.proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_S)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@contextlib.contextmanager
def running_cluster(base: Path, *up_args: str) -> Iterator[LocalCluster]:
    """`dfs up` under `base` (mount at base/mnt), `dfs down` afterwards; fails the
    caller if anything stays mounted."""
    cluster = LocalCluster(base / "cluster", base / "mnt")
    try:
        cluster.up(*up_args)
        yield cluster
    finally:
        cluster.down()
        if is_mounted(cluster.mount):
            subprocess.run(["fusermount3", "-uz", str(cluster.mount)], capture_output=True)
            raise AssertionError(f"{cluster.mount} still mounted after dfs down")


@contextlib.contextmanager
def extra_mount(cluster: LocalCluster, path: Path, options: str = "allow_other"
                ) -> Iterator[ExtraMount]:
    mount = ExtraMount(cluster.cluster_file, path, options).start()
    try:
        yield mount
    finally:
        mount.stop()
