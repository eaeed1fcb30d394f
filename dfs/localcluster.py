"""`dfs up` and `dfs down`: a whole cluster on one machine, under one directory.

`up` makes the cluster's secret if the directory is new, starts the metadata
and data servers in the background with their state under it, waits until
they are healthy, mounts the cluster, and records everything in
DIR/cluster.json. On a running directory it says so; on a stopped one it
starts again from the existing state (same addresses, so the metadata group
recognises its members). `down` unmounts and stops every process, keeping
the data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dfs.auth import (
    SECRET_FILE_NAME,
    ClusterSecret,
    SecretError,
    init_cluster_dir,
    read_secret,
    read_tls,
    secret_from_flags,
    sync_channel,
)
from dfs.rpc import admin_pb2, admin_pb2_grpc
from dfs.tlsca import CA_CERT, CaError, IssuedPair, issue, make_ca

CLUSTER_FILE = "cluster.json"
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
DFS = [sys.executable, "-m", "dfs.cli"]


class UpError(Exception):
    """The cluster could not be started (or stopped); the message says why."""


@dataclass
class ProcessRecord:
    id: int
    addr: str
    pid: int
    data_dir: str
    log: str
    metrics: str = ""  # host:port of its Prometheus endpoint, when up --metrics


@dataclass
class MountRecord:
    path: str
    pid: int
    log: str
    options: str = ""
    metrics: str = ""


@dataclass
class ClusterRecord:
    meta: list[ProcessRecord] = field(default_factory=list)
    data: list[ProcessRecord] = field(default_factory=list)
    mount: MountRecord | None = None
    replicas: int = 3
    secret: str = ""
    # cert, key, ca: the PEM files every process uses when up --tls made them
    tls: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.rename(path)

    @classmethod
    def load(cls, path: Path) -> ClusterRecord:
        raw = json.loads(path.read_text())
        mount = raw.get("mount")
        return cls(
            meta=[ProcessRecord(**m) for m in raw.get("meta", [])],
            data=[ProcessRecord(**d) for d in raw.get("data", [])],
            mount=MountRecord(**mount) if mount else None,
            replicas=raw.get("replicas", 3),
            secret=raw.get("secret", ""),
            tls=raw.get("tls", {}),
        )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free a moment ago: the sockets are held together so the
    kernel cannot hand out one port twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def healthy(addr: str, secret: ClusterSecret | None = None) -> bool:
    with sync_channel(addr, secret) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def health_probe(addr: str, secret: ClusterSecret | None = None) -> Callable[[], bool]:
    return lambda: healthy(addr, secret)


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == target:
            return True
    return False


def spawn(argv: list[str], log_path: Path) -> int:
    """Start a detached process (own session) that outlives `dfs up`."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    return proc.pid


def wait_for(what: str, ready: Callable[[], bool], pid: int, log_path: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive(pid):
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise UpError(f"{what} exited: {tail[0]} (log: {log_path})")
        time.sleep(0.1)
    raise UpError(f"{what} not ready after {HEALTH_TIMEOUT_S:.0f} s (log: {log_path})")


def up(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    record_path = directory / CLUSTER_FILE
    try:
        if record_path.exists():
            record = ClusterRecord.load(record_path)
            running = [p for p in record.meta + record.data if alive(p.pid)]
            mounted = record.mount is not None and is_mounted(Path(record.mount.path))
            if running and len(running) == len(record.meta + record.data) and mounted:
                assert record.mount is not None
                print(f"dfs: already running, mounted at {record.mount.path}")
                return 0
            if running:
                print(
                    f"dfs: {len(running)} processes of a half-running cluster found; "
                    f"stopping them first"
                )
                stop(record, directory)
        record = start(args, directory, record_path)
    except (UpError, SecretError, CaError, OSError) as err:
        print(f"dfs up: {err}", file=sys.stderr)
        return 1
    mount = record.mount
    assert mount is not None
    print(
        f"dfs: {len(record.meta)} metadata + {len(record.data)} data servers, "
        f"R = {record.replicas}, mounted at {mount.path}"
    )
    print(f"  status: dfs admin --cluster {record_path} meta status")
    print(f"  stop:   dfs down --dir {args.dir}")
    return 0


def start(args: argparse.Namespace, directory: Path, record_path: Path) -> ClusterRecord:
    directory.mkdir(parents=True, exist_ok=True)
    secret_path = directory / SECRET_FILE_NAME
    if not secret_path.exists():
        init_cluster_dir(directory)
    read_secret(secret_path)  # refuse a malformed or too-open secret before starting
    previous = ClusterRecord.load(record_path) if record_path.exists() else None
    tls = (previous.tls if previous else {}) or (local_ca(directory) if args.tls else {})
    secret = secret_from_flags(str(secret_path), False,
                               read_tls(tls.get("cert"), tls.get("key"), tls.get("ca")))
    # Every process takes the same three files: one certificate serves a host.
    tls_flags = [arg for name in ("cert", "key", "ca") if name in tls
                 for arg in (f"--tls-{name}", tls[name])]
    meta_count = len(previous.meta) if previous else args.meta
    data_count = len(previous.data) if previous else args.data
    if previous:
        meta_addrs = [m.addr for m in previous.meta]
        data_addrs = [d.addr for d in previous.data]
    elif args.base_port:
        ports = list(range(args.base_port, args.base_port + meta_count + data_count))
        meta_addrs = [f"127.0.0.1:{p}" for p in ports[:meta_count]]
        data_addrs = [f"127.0.0.1:{p}" for p in ports[meta_count:]]
    else:
        ports = free_ports(meta_count + data_count)
        meta_addrs = [f"127.0.0.1:{p}" for p in ports[:meta_count]]
        data_addrs = [f"127.0.0.1:{p}" for p in ports[meta_count:]]
    replicas = previous.replicas if previous else args.replicas
    if replicas > data_count:
        raise UpError(
            f"--replicas {replicas} needs at least as many data servers (--data {data_count})"
        )
    record = ClusterRecord(replicas=replicas, secret=str(secret_path), tls=tls)
    metrics = metrics_addrs(args, previous, meta_count + data_count + 1)
    peers = ",".join(f"{i}={a}" for i, a in enumerate(meta_addrs, start=1))
    for node_id, addr in enumerate(meta_addrs, start=1):
        data_dir, log = directory / f"meta{node_id}", directory / f"meta{node_id}.log"
        pid = spawn(
            [
                *DFS,
                "meta",
                "--id",
                str(node_id),
                "--listen",
                addr,
                "--peers",
                peers,
                "--data-dir",
                str(data_dir),
                "--secret",
                str(secret_path),
                *tls_flags,
                *metrics_flag(metrics, node_id - 1),
            ],
            log,
        )
        record.meta.append(ProcessRecord(node_id, addr, pid, str(data_dir), str(log),
                                         metrics_at(metrics, node_id - 1)))
    # Data servers start beside the metadata servers rather than after them: they
    # retry registering until a leader answers, and their interpreters' start-up
    # (most of `dfs up`'s time on a busy machine) then overlaps the election.
    meta_flag = ",".join(meta_addrs)
    for server_id, addr in enumerate(data_addrs, start=1):
        data_dir, log = directory / f"data{server_id}", directory / f"data{server_id}.log"
        pid = spawn(
            [
                *DFS,
                "data",
                "--id",
                str(server_id),
                "--listen",
                addr,
                "--meta",
                meta_flag,
                "--data-dir",
                str(data_dir),
                "--secret",
                str(secret_path),
                *tls_flags,
                *metrics_flag(metrics, meta_count + server_id - 1),
            ],
            log,
        )
        record.data.append(ProcessRecord(server_id, addr, pid, str(data_dir), str(log),
                                         metrics_at(metrics, meta_count + server_id - 1)))
    record.save(record_path)
    for proc in record.meta:
        wait_for(f"metadata server {proc.id}", health_probe(proc.addr, secret), proc.pid,
                 Path(proc.log))
    if not previous:
        set_replication(meta_addrs, secret, replicas)
    for proc in record.data:
        wait_for(f"data server {proc.id}", health_probe(proc.addr, secret), proc.pid,
                 Path(proc.log))
    mount_path = (
        Path(args.mount).resolve()
        if args.mount
        else (Path(previous.mount.path) if previous and previous.mount else directory / "mnt")
    )
    mount_path.mkdir(parents=True, exist_ok=True)
    if is_mounted(mount_path):
        subprocess.run(["fusermount3", "-uz", str(mount_path)], capture_output=True)
    log = directory / "mount.log"
    options = args.mount_options or (previous.mount.options if previous and previous.mount else "")
    option_flags = ["-o", options] if options else []
    mount_metrics = metrics_flag(metrics, meta_count + data_count)
    pid = spawn([*DFS, "mount", *option_flags, *mount_metrics, "--cluster", str(record_path),
                 str(mount_path)], log)
    record.mount = MountRecord(str(mount_path), pid, str(log), options,
                               metrics_at(metrics, meta_count + data_count))
    record.save(record_path)
    wait_for("the mount", lambda: is_mounted(mount_path), pid, log)
    return record


def local_ca(directory: Path) -> dict[str, str]:
    """DIR/tls: a CA and one certificate for 127.0.0.1 (made once, then reused)."""
    tls_dir = directory / "tls"
    pair = IssuedPair(tls_dir / "node.pem", tls_dir / "node.key")
    if not pair.cert.exists():
        if not (tls_dir / CA_CERT).exists():
            make_ca(tls_dir, "dfs local cluster CA")
        pair = issue(tls_dir, "node", ["127.0.0.1", "localhost"])
    return {"cert": str(pair.cert), "key": str(pair.key), "ca": str(tls_dir / CA_CERT)}


def metrics_addrs(args: argparse.Namespace, previous: ClusterRecord | None,
                  count: int) -> list[str]:
    """A metrics address per process (metadata, data, then the mount), or none."""
    if previous and previous.mount and previous.mount.metrics:
        return [p.metrics for p in previous.meta + previous.data] + [previous.mount.metrics]
    if not getattr(args, "metrics", False):
        return []
    return [f"127.0.0.1:{port}" for port in free_ports(count)]


def metrics_at(metrics: list[str], index: int) -> str:
    return metrics[index] if metrics else ""


def metrics_flag(metrics: list[str], index: int) -> list[str]:
    return ["--metrics", metrics[index]] if metrics else []


def set_replication(meta_addrs: list[str], secret: ClusterSecret | None, replicas: int) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        for addr in meta_addrs:
            with sync_channel(addr, secret) as channel:
                try:
                    reply = admin_pb2_grpc.AdminStub(channel).RingSetReplication(
                        admin_pb2.ReplicationRequest(replicas=replicas, min_replicas=replicas),
                        timeout=5,
                    )
                except grpc.RpcError:
                    continue
                if reply.ok:
                    return
                raise UpError(f"cannot set {replicas} replicas: {reply.message}")
        time.sleep(0.2)
    raise UpError("no metadata leader accepted the replication setting")


def down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    record_path = directory / CLUSTER_FILE
    if not record_path.exists():
        print(f"dfs down: no cluster at {directory}", file=sys.stderr)
        return 2
    stop(ClusterRecord.load(record_path), directory)
    print(f"dfs: stopped; data kept under {directory}")
    return 0


def stop(record: ClusterRecord, directory: Path) -> None:
    if record.mount is not None:
        mount_path = Path(record.mount.path)
        if is_mounted(mount_path):
            # A live mount process flushes on unmount; a dead one leaves a stale
            # mount that only a lazy unmount clears.
            flag = "-u" if alive(record.mount.pid) else "-uz"
            done = subprocess.run(["fusermount3", flag, str(mount_path)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(mount_path)], capture_output=True)
        terminate([record.mount.pid])
    terminate([p.pid for p in record.data])
    terminate([p.pid for p in record.meta])


def terminate(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after a timeout."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
