"""Ceilings that every dfs benchmark reports beside its own figures, measured in
the same run: fdatasync rate of a directory's disk and bare gRPC unary round
trips at a given concurrency (a separate server process with the same auth
interceptor and server shell as dfs servers).

Run as a script it serves the bare echo server: `benchlib.py serve --listen ADDR`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dfs.auth import ClusterSecret, aio_channel, init_cluster_dir, new_secret  # noqa: E402

if TYPE_CHECKING:
    from tests.support.meta_cluster import MetaCluster


@dataclass
class Rate:
    ops_per_s: float
    p50_ms: float
    p99_ms: float

    def row(self) -> str:
        return f"{self.ops_per_s:10.0f}/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def rate_from_latencies(latencies: list[float], elapsed_s: float) -> Rate:
    latencies.sort()
    return Rate(len(latencies) / elapsed_s, percentile(latencies, 0.5) * 1e3,
                percentile(latencies, 0.99) * 1e3)


def fdatasync_rate(directory: Path, seconds: float = 2.0, block: int = 4096) -> Rate:
    """Appends of `block` bytes, each followed by fdatasync: the WAL's floor."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".fsync-probe-")
    latencies = []
    try:
        payload = os.urandom(block)
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            os.write(fd, payload)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - now)
        return rate_from_latencies(latencies, time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(name)


class EchoServer:
    """A bare gRPC server process: the dfs server shell serving Admin.Status."""

    def __init__(self, addr: str, secret: ClusterSecret) -> None:
        self.addr = addr
        self.tmp = tempfile.TemporaryDirectory()
        secret_path = Path(self.tmp.name) / "secret"
        secret_path.write_text(f'cluster_id = "{secret.cluster_id}"\nsecret = "{secret.token}"\n')
        secret_path.chmod(0o600)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--listen", addr, "--secret", str(secret_path)],
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


async def unary_rate(addr: str, secret: ClusterSecret, concurrency: int, seconds: float) -> Rate:
    from dfs.rpc import admin_pb2, admin_pb2_grpc

    channel = aio_channel(addr, secret)
    stub = admin_pb2_grpc.AdminStub(channel)
    await stub.Status(admin_pb2.StatusRequest(), timeout=10, wait_for_ready=True)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        request = admin_pb2.StatusRequest()
        while (begin := time.perf_counter()) < stop_at:
            await stub.Status(request, timeout=10)
            latencies.append(time.perf_counter() - begin)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await channel.close()
    return rate_from_latencies(latencies, elapsed)


def grpc_unary_ceilings(
    addr: str, concurrencies: list[int], seconds: float
) -> dict[int, Rate]:
    secret = new_secret()
    server = EchoServer(addr, secret)
    try:
        return {c: asyncio.run(unary_rate(addr, secret, c, seconds)) for c in concurrencies}
    finally:
        server.stop()


@contextlib.contextmanager
def running_meta_cluster(
    extra_args: Sequence[str] = (),
    parent: Path | None = None,
    prepare: Callable[[MetaCluster], None] | None = None,
) -> Iterator[MetaCluster]:
    """Three real `dfs meta` replicas with a leader, in a temporary directory that is
    removed, with every process, when the block ends. `prepare` may fill the data
    dirs before the replicas start (e.g. with a snapshot to start from)."""
    from tests.support.meta_cluster import make_meta_cluster
    from tests.support.procs import ProcessSet

    base = Path(tempfile.mkdtemp(prefix="bench-meta-", dir=parent))
    secret_file, _ = init_cluster_dir(base / "cluster")
    procs = ProcessSet(base)
    try:
        cluster = make_meta_cluster(procs, secret_file, extra_args=list(extra_args))
        if prepare is not None:
            prepare(cluster)
        cluster.start_all()
        cluster.leader()
        yield cluster
    finally:
        procs.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _serve(listen: str, secret_path: Path) -> None:
    from dfs.auth import read_secret
    from dfs.rpc import admin_pb2, admin_pb2_grpc
    from dfs.serving import GrpcServer

    class Echo(admin_pb2_grpc.AdminServicer):
        async def Status(self, request: Any, context: Any) -> admin_pb2.StatusReply:
            return admin_pb2.StatusReply(id=1)

    async def main() -> None:
        server = GrpcServer(listen, read_secret(secret_path))
        server.add(lambda s: admin_pb2_grpc.add_AdminServicer_to_server(Echo(), s))
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0.5)

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--listen", required=True)
    serve.add_argument("--secret", required=True, type=Path)
    probe = sub.add_parser("probe", help="print the ceilings of this machine")
    probe.add_argument("--dir", type=Path, default=Path("."))
    probe.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if args.command == "serve":
        _serve(args.listen, args.secret)
    else:
        print(f"fdatasync 4 KiB: {fdatasync_rate(args.dir, args.seconds).row()}")
        for c, r in grpc_unary_ceilings("127.0.0.1:47111", [1, 16, 256], args.seconds).items():
            print(f"gRPC unary x{c:<4}: {r.row()}")
