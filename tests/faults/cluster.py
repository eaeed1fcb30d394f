"""The fault suite's cluster: 3 `dfs meta` and 4 `dfs data` processes, each in its own
network namespace on the suite's bridge, bound to its namespace address only, each
with its data dir on a lossy disk of its own (tests/faults/lossydisk.py, so a power
loss drops what the server did not fsync); a `dfs mount` in the root namespace
reaches them over the bridge."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import cast

from dfs.auth import init_cluster_dir, sync_channel
from dfs.paxos.planted import PLANTED_BUG_ENV
from dfs.rpc import admin_pb2, admin_pb2_grpc
from tests.faults.commands import HelperProcess
from tests.faults.lossydisk import LossyDisk
from tests.faults.netns import Network
from tests.posix.mounts import ExtraMount
from tests.support.data_cluster import DataCluster
from tests.support.meta_cluster import MetaCluster
from tests.support.procs import ProcessSet

META_PORT, DATA_PORT = 7100, 7200
SESSION_TIMEOUT_MS = 5000
REPLICAS, MIN_REPLICAS = 3, 2  # acknowledged data survives min_replicas - 1 = 1 lost server


@dataclass
class NsCluster:
    network: Network
    meta: MetaCluster
    data: DataCluster
    cluster_file: Path
    base: Path
    disks: dict[str, LossyDisk]  # by server name: meta1, data1, ...
    mount: ExtraMount | None = None

    @property
    def mnt(self) -> Path:
        assert self.mount is not None
        return self.mount.path

    def start_mount(self, name: str = "mnt", options: str = "") -> ExtraMount:
        mount = ExtraMount(self.cluster_file, self.base / name, options)
        self.network.ledger.add("mounts", str(mount.path))
        mount.start()
        self.network.ledger.add("pids", mount.pid)
        return mount

    def restart_meta(self, node_id: int) -> None:
        proc = self.meta.start(node_id)
        self.network.ledger.add("pids", proc.pid)

    def restart_data(self, server_id: int) -> None:
        proc = self.data.start(server_id)
        self.network.ledger.add("pids", proc.pid)

    def stop(self) -> None:
        """Unmount, then kill -9 every server: the checks are done and a graceful
        stop of seven processes costs more than the whole heal. Then the disks."""
        if self.mount is not None:
            self.mount.stop()
        for proc in self.meta.procs.procs:
            proc.signal(signal.SIGKILL)
        self.meta.procs.cleanup()
        for disk in self.disks.values():
            disk.stop()

    def start_disk(self, name: str) -> None:
        disk = self.disks[name]
        self.network.ledger.add("mounts", str(disk.mountpoint))
        disk.start()
        self.network.ledger.add("pids", disk.pid)


def start_cluster(network: Network, base: Path, planted: str = "") -> NsCluster:
    """Namespaces, servers, replication R=3 / min 2, and the mount."""
    base.mkdir(parents=True, exist_ok=True)
    # Servers are started (and restarted by the nemesis) by the command helper, never
    # forked here, where the workloads hold files open on the mount.
    procs = ProcessSet(base_dir=base, popen=cast(Callable[..., Popen[bytes]], HelperProcess))
    secret_file, _ = init_cluster_dir(base / "secret")
    meta_addrs = {i: f"{network.add_host(f'meta{i}')}:{META_PORT}" for i in (1, 2, 3)}
    data_addrs = {i: f"{network.add_host(f'data{i}')}:{DATA_PORT}" for i in (1, 2, 3, 4)}
    meta = MetaCluster(
        procs, secret_file, meta_addrs,
        extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)],
        launcher={i: network.exec_prefix(f"meta{i}") for i in meta_addrs},
        env={PLANTED_BUG_ENV: planted} if planted else {},
    )
    # The data servers get the planted bug through their launcher (the chunk store's).
    planted_env = ["env", f"{PLANTED_BUG_ENV}={planted}"] if planted else []
    data = DataCluster(meta, data_addrs, {i: base / f"data{i}" for i in data_addrs},
                       launcher={i: [*network.exec_prefix(f"data{i}"), *planted_env]
                                 for i in data_addrs})
    cluster_file = base / "cluster.json"
    cluster_file.write_text(json.dumps(
        {"meta": [{"addr": a} for a in meta.addr_list], "secret": str(secret_file)}))
    servers = [*(f"meta{i}" for i in meta_addrs), *(f"data{i}" for i in data_addrs)]
    disks = {name: LossyDisk(base / "disks" / name, base / name) for name in servers}
    cluster = NsCluster(network, meta, data, cluster_file, base, disks)
    for name in servers:
        cluster.start_disk(name)
    for node_id in meta_addrs:
        cluster.restart_meta(node_id)
    for server_id in data_addrs:  # they register once the metadata group serves
        cluster.restart_data(server_id)
    for proc in meta.replicas.values():
        proc.wait_healthy(timeout_s=60)
    set_replication(meta, REPLICAS, MIN_REPLICAS)
    for proc in data.servers.values():
        proc.wait_healthy(timeout_s=60)
    cluster.mount = cluster.start_mount()
    # What start-up wrote is taken as durable (a real disk has long flushed it): from
    # here on only fsyncs count.
    for disk in disks.values():
        disk.sync()
    return cluster


def set_replication(meta: MetaCluster, replicas: int, min_replicas: int) -> None:
    deadline = time.monotonic() + 60
    request = admin_pb2.ReplicationRequest(replicas=replicas, min_replicas=min_replicas)
    while time.monotonic() < deadline:
        leader = meta.leader(timeout_s=30)
        with sync_channel(meta.addrs[leader], meta.secret) as channel:
            try:
                reply = admin_pb2_grpc.AdminStub(channel).RingSetReplication(request, timeout=5)
            except Exception:
                time.sleep(0.2)
                continue
        if reply.ok:
            return
        raise RuntimeError(f"cannot set replication: {reply.message}")
    raise TimeoutError("no leader accepted the replication setting")
