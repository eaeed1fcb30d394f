"""dfs as a benchmark target: `dfs up` (3 metadata, 4 data, R = 3) and `dfs down`.

Until the local cluster exists, `dfs up` exits non-zero saying so; that is reported
as "not available yet" and the run goes on without dfs. `dfs up` may return once the
mount is up or stay in the foreground; both are handled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mounts import is_mounted, unmount

META_SERVERS = 3
DATA_SERVERS = 4
REPLICAS = 3
UP_TIMEOUT_S = 120.0
DOWN_TIMEOUT_S = 60.0
POLL_S = 0.1
CLUSTER_FILE = "cluster.json"  # what `dfs up` records in its --dir


def default_dfs_cmd() -> list[str]:
    """The `dfs` next to this interpreter (a venv's console script), else `python -m`."""
    console_script = Path(sys.executable).with_name("dfs")
    if console_script.exists():
        return [str(console_script)]
    return [sys.executable, "-m", "dfs.cli"]


@dataclass
class DfsCluster:
    """A running local cluster and its mount point."""

    dfs_cmd: list[str]
    state_dir: Path
    mountpoint: Path
    foreground: subprocess.Popen[bytes] | None

    def processes(self) -> dict[str, int]:
        """Pid of the mount and of every server, by name (mount, meta1, data1, ...),
        from the cluster.json `dfs up` wrote."""
        record = json.loads((self.state_dir / CLUSTER_FILE).read_text())
        pids = {"mount": int(record["mount"]["pid"])}
        for kind in ("meta", "data"):
            pids |= {f"{kind}{proc['id']}": int(proc["pid"]) for proc in record[kind]}
        return pids

    def stop(self) -> None:
        subprocess.run([*self.dfs_cmd, "down", "--dir", str(self.state_dir)],
                       timeout=DOWN_TIMEOUT_S, check=False, stdout=subprocess.DEVNULL)
        if self.foreground is not None and self.foreground.poll() is None:
            self.foreground.terminate()
            try:
                self.foreground.wait(timeout=DOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.foreground.kill()
                self.foreground.wait()
        unmount(self.mountpoint)


@dataclass(frozen=True)
class Unavailable:
    """Why dfs is not part of this run."""

    reason: str


def start_dfs(dfs_cmd: list[str], state_dir: Path, log_path: Path) -> DfsCluster | Unavailable:
    mountpoint = state_dir / "mnt"
    argv = [*dfs_cmd, "up", "--dir", str(state_dir), "--meta", str(META_SERVERS),
            "--data", str(DATA_SERVERS), "--replicas", str(REPLICAS), "--mount", str(mountpoint)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            if code == 0 and is_mounted(mountpoint):
                return DfsCluster(dfs_cmd, state_dir, mountpoint, foreground=None)
            return Unavailable(_why(log_path, code))
        if is_mounted(mountpoint):
            return DfsCluster(dfs_cmd, state_dir, mountpoint, foreground=proc)
        time.sleep(POLL_S)
    DfsCluster(dfs_cmd, state_dir, mountpoint, foreground=proc).stop()
    return Unavailable(f"`dfs up` did not mount {mountpoint} within {UP_TIMEOUT_S:.0f} s")


def _why(log_path: Path, code: int) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    if "not available yet" in last:
        return "not available yet"
    return f"`dfs up` exited {code}: {last}" if last else f"`dfs up` exited {code}"
