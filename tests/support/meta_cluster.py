"""A cluster of real `dfs meta` processes on loopback for integration tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dfs.auth import ClusterSecret, read_secret, sync_channel
from dfs.rpc import admin_pb2, admin_pb2_grpc
from tests.support.ports import free_addrs
from tests.support.procs import ProcessSet, ServerProcess

DFS = [sys.executable, "-m", "dfs.cli"]


@dataclass
class MetaCluster:
    procs: ProcessSet
    secret_file: Path
    addrs: dict[int, str]
    extra_args: list[str] = field(default_factory=list)
    # Per replica: a command that runs it elsewhere (the fault suite's `ip netns exec`).
    launcher: dict[int, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every replica
    replicas: dict[int, ServerProcess] = field(default_factory=dict)

    @property
    def secret(self) -> ClusterSecret:
        return read_secret(self.secret_file)

    @property
    def addr_list(self) -> list[str]:
        return [self.addrs[i] for i in sorted(self.addrs)]

    def peers_flag(self) -> str:
        return ",".join(f"{i}={a}" for i, a in sorted(self.addrs.items()))

    def start(self, node_id: int) -> ServerProcess:
        argv = [*self.launcher.get(node_id, []), *DFS, "meta", "--id", str(node_id),
                "--listen", self.addrs[node_id],
                "--peers", self.peers_flag(), "--data-dir",
                str(self.procs.base_dir / f"meta{node_id}"), "--secret", str(self.secret_file),
                *self.extra_args]
        proc = self.procs.start(f"meta{node_id}", argv, addr=self.addrs[node_id], env=self.env,
                                data_dir=self.procs.base_dir / f"meta{node_id}")
        self.replicas[node_id] = proc
        return proc

    def start_all(self) -> None:
        for node_id in sorted(self.addrs):
            self.start(node_id)
        for proc in self.replicas.values():
            proc.wait_healthy(timeout_s=30)

    def status(self, node_id: int, timeout_s: float = 1.0) -> admin_pb2.StatusReply | None:
        with sync_channel(self.addrs[node_id], self.secret) as channel:
            try:
                reply: admin_pb2.StatusReply = admin_pb2_grpc.AdminStub(channel).Status(
                    admin_pb2.StatusRequest(), timeout=timeout_s)
                return reply
            except Exception:
                return None

    def leader(self, timeout_s: float = 15.0, exclude: set[int] | None = None) -> int:
        """The id that every answering replica agrees leads (waits for one)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node_id, proc in self.replicas.items():
                if (exclude and node_id in exclude) or not proc.alive():
                    continue
                status = self.status(node_id, timeout_s=0.5)
                if status is not None and status.meta.role == "leader":
                    return node_id
            time.sleep(0.05)
        raise TimeoutError("no leader elected")

    def wait_applied(self, node_ids: list[int], at_least: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            statuses = [self.status(i) for i in node_ids]
            if all(s is not None and s.meta.applied >= at_least for s in statuses):
                return
            time.sleep(0.05)
        raise TimeoutError(f"replicas {node_ids} did not apply up to {at_least}")

    def kill(self, node_id: int) -> None:
        self.replicas[node_id].kill()

    def pause(self, node_id: int) -> None:
        self.replicas[node_id].signal(signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.replicas[node_id].signal(signal.SIGCONT)

    def admin(self, *words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DFS, "admin", "--meta", ",".join(self.addr_list), "--secret",
             str(self.secret_file), *words],
            capture_output=True, text=True, timeout=60,
        )

    def admin_json(self, *words: str) -> dict[str, object]:
        done = self.admin(*words, "--json")
        assert done.returncode in (0, 1), done.stderr
        parsed: dict[str, object] = json.loads(done.stdout)
        return parsed


def make_meta_cluster(procs: ProcessSet, secret_file: Path, count: int = 3,
                      extra_args: list[str] | None = None) -> MetaCluster:
    addrs = dict(enumerate(free_addrs(count), start=1))
    return MetaCluster(procs, secret_file, addrs, list(extra_args or []))
