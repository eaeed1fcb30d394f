#!/usr/bin/env python3
"""Data path benchmark: 4 MiB chunk writes (R = 3, fsynced on every replica) and reads
through gRPC on real `dfs data` processes, beside the ceilings measured in the same
run on the same disk: raw local write+fsync and read of 4 MiB files (same cache
state: both read what was just written), and a bare gRPC streaming server (the dfs
server shell, no disk) for uploads and downloads of the same pieces.

Writes run in both replication modes: the client writing to every replica in
parallel (the default) and a chain through forward_to. Reports figures; asserts
nothing about speed. Every chunk written is read back and compared.

    python scripts/bench_data.py [--chunks 48] [--rounds 3] [--concurrency 1,4] [--dir DIR]

Run as `bench_data.py serve-sink --listen ADDR --secret FILE` it is the bare
streaming server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dfs.auth import ClusterSecret, init_cluster_dir, read_secret  # noqa: E402
from dfs.client.data import FileData  # noqa: E402
from dfs.client.meta import MetaClient  # noqa: E402
from dfs.client.replicas import DataChannels, read_copy, upload_pieces, write_copy  # noqa: E402
from dfs.client.retry import RetryPolicy  # noqa: E402
from dfs.rpc import data_pb2, data_pb2_grpc  # noqa: E402
from tests.support.data_cluster import make_data_cluster  # noqa: E402
from tests.support.meta_cluster import make_meta_cluster  # noqa: E402
from tests.support.ports import free_addrs  # noqa: E402
from tests.support.procs import ProcessSet  # noqa: E402

CHUNK = 4 * 1024 * 1024
MB = 1e6
R = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- raw disk ------------------------------------------------------------------------------


def raw_disk(directory: Path, count: int) -> tuple[float, float]:
    """(write+fsync MB/s, read MB/s) of `count` 4 MiB files, one at a time."""
    target = Path(tempfile.mkdtemp(dir=directory, prefix="raw-"))
    payload = os.urandom(CHUNK)
    start = time.perf_counter()
    for index in range(count):
        fd = os.open(target / f"f{index}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    for index in range(count):
        fd = os.open(target / f"f{index}", os.O_RDONLY)
        try:
            assert len(os.pread(fd, CHUNK, 0)) == CHUNK
        finally:
            os.close(fd)
    read_s = time.perf_counter() - start
    for index in range(count):
        os.unlink(target / f"f{index}")
    target.rmdir()
    return count * CHUNK / MB / write_s, count * CHUNK / MB / read_s


# -- bare gRPC streaming ceiling ----------------------------------------------------------------


class Sink(data_pb2_grpc.DataServicer):
    """Takes uploads and serves downloads of the dfs wire shape, with no disk."""

    def __init__(self) -> None:
        self.piece = os.urandom(1024 * 1024)

    async def WriteChunk(self, request_iterator: Any, context: Any) -> data_pb2.WriteChunkReply:
        async for _ in request_iterator:
            pass
        return data_pb2.WriteChunkReply(status=data_pb2.CHUNK_STATUS_OK)

    async def HasChunks(self, request: Any, context: Any) -> data_pb2.HasChunksReply:
        return data_pb2.HasChunksReply()

    async def ReadChunk(self, request: Any, context: Any) -> AsyncIterator[data_pb2.ReadChunkReply]:
        for offset in range(0, request.length, len(self.piece)):
            yield data_pb2.ReadChunkReply(offset=offset, data=self.piece, chunk_length=CHUNK)


def serve_sink(listen: str, secret_path: Path) -> None:
    from dfs.serving import GrpcServer

    async def main() -> None:
        server = GrpcServer(listen, read_secret(secret_path))
        server.add(lambda s: data_pb2_grpc.add_DataServicer_to_server(Sink(), s))
        await server.start()
        await server.set_serving(True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    asyncio.run(main())


async def stream_ceiling(addr: str, secret: ClusterSecret, count: int,
                         concurrency: int) -> tuple[float, float]:
    """(upload MB/s, download MB/s) of 4 MiB streams to the bare server."""
    channels = DataChannels(secret)
    pieces = upload_pieces(1, 1, os.urandom(CHUNK), 0)
    await channels.stub(addr).HasChunks(data_pb2.HasChunksRequest(), wait_for_ready=True,
                                        timeout=10)
    up = await _timed(count, concurrency, lambda i: write_copy(channels, addr, pieces))
    down = await _timed(count, concurrency, lambda i: read_copy(channels, addr, i, 0, CHUNK))
    await channels.close()
    return up, down


async def _timed(count: int, concurrency: int, op: Any) -> float:
    """MB/s of `count` 4 MiB operations with `concurrency` in flight."""
    queue = list(range(count))
    start = time.perf_counter()

    async def worker() -> None:
        while queue:
            result = await op(queue.pop())
            if isinstance(result, Exception):
                raise result

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count * CHUNK / MB / (time.perf_counter() - start)


# -- dfs ----------------------------------------------------------------------------------------


async def dfs_figures(meta_addrs: list[str], secret: ClusterSecret, count: int,
                      concurrencies: list[int]) -> dict[str, float]:
    client = MetaClient(meta_addrs, secret, RetryPolicy(deadline_s=30, attempt_timeout_s=2.0))
    await client.open()
    figures: dict[str, float] = {}
    written: dict[int, bytes] = {}
    try:
        for chain in (False, True):
            files = FileData(client, secret, chain=chain)
            mode = "chain" if chain else "parallel"
            for concurrency in concurrencies:
                payloads = [os.urandom(CHUNK) for _ in range(count)]

                async def write(index: int, files: FileData = files,
                                payloads: list[bytes] = payloads) -> None:
                    stored = await files.write_chunk(payloads[index])
                    assert len(stored.durable_at) == R, stored
                    written[stored.chunk_id] = payloads[index]

                figures[f"write {mode} c{concurrency}"] = await _timed(count, concurrency, write)
                log(f"write {mode} c{concurrency}: {figures[f'write {mode} c{concurrency}']:.0f}")
            await files.close()
        files = FileData(client, secret)
        ids = list(written)
        for concurrency in concurrencies:
            async def read(index: int) -> None:
                chunk_id = ids[index % len(ids)]
                assert await files.chunks.read_chunk(chunk_id, 0, CHUNK) == written[chunk_id]

            figures[f"read c{concurrency}"] = await _timed(count, concurrency, read)
            log(f"read c{concurrency}: {figures[f'read c{concurrency}']:.0f}")
        await files.close()
    finally:
        await client.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sink = sub.add_parser("serve-sink")
    sink.add_argument("--listen", required=True)
    sink.add_argument("--secret", required=True, type=Path)
    parser.add_argument("--chunks", type=int, default=48, help="4 MiB chunks per figure")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--dir", type=Path, help="where servers and raw files live")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the servers' data dirs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "serve-sink":
        serve_sink(args.listen, args.secret)
        return 0
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    base = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.dir))
    secret_file, secret = init_cluster_dir(base / "cluster")
    sink_addr = free_addrs(1)[0]
    sink_proc = subprocess.Popen(
        [sys.executable, __file__, "serve-sink", "--listen", sink_addr, "--secret",
         str(secret_file)], stdin=subprocess.DEVNULL)
    procs = ProcessSet(base)
    rounds: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    try:
        meta = make_meta_cluster(procs, secret_file)
        meta.start_all()
        data = make_data_cluster(meta, count=R)
        data.start_all()
        # Rounds interleave every figure, so load from other work on the machine
        # falls on the ceilings and on dfs alike; the median of each is reported.
        for number in range(1, args.rounds + 1):
            log(f"round {number}")
            rounds.append(measure_round(base, sink_addr, meta.addr_list, secret, args.chunks,
                                        concurrencies))
    finally:
        procs.cleanup()
        sink_proc.send_signal(signal.SIGTERM)
        sink_proc.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)  # gigabytes of chunks per run
    report: dict[str, Any] = {
        "chunk_bytes": CHUNK, "replicas": R, "chunks": args.chunks, "rounds": rounds,
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "median": {key: statistics.median(r[key] for r in rounds) for key in rounds[0]},
    }
    print_report(report["median"], concurrencies)
    print(f"\nmedian of {args.rounds} rounds; 1-minute load average "
          f"{load_before:.1f} before, {report['load_average_after']:.1f} after")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def measure_round(base: Path, sink_addr: str, meta_addrs: list[str], secret: ClusterSecret,
                  chunks: int, concurrencies: list[int]) -> dict[str, float]:
    figures: dict[str, float] = {}
    raw_write, raw_read = raw_disk(base, chunks)
    figures["raw write+fsync MB/s"], figures["raw read MB/s"] = raw_write, raw_read
    log(f"raw disk: write+fsync {raw_write:.0f} MB/s, read {raw_read:.0f} MB/s")
    for concurrency in concurrencies:
        up, down = asyncio.run(stream_ceiling(sink_addr, secret, chunks, concurrency))
        figures[f"grpc upload c{concurrency} MB/s"] = up
        figures[f"grpc download c{concurrency} MB/s"] = down
        log(f"bare gRPC c{concurrency}: upload {up:.0f} MB/s, download {down:.0f} MB/s")
    dfs = asyncio.run(dfs_figures(meta_addrs, secret, chunks, concurrencies))
    figures.update({f"dfs {name} MB/s": value for name, value in dfs.items()})
    return figures


def print_report(report: dict[str, Any], concurrencies: list[int]) -> None:
    raw_w, raw_r = report["raw write+fsync MB/s"], report["raw read MB/s"]
    print("| figure | MB/s | ceiling | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| raw local write+fsync, 4 MiB files | {raw_w:.0f} | | |")
    print(f"| raw local read, 4 MiB files | {raw_r:.0f} | | |")
    for c in concurrencies:
        up, down = report[f"grpc upload c{c} MB/s"], report[f"grpc download c{c} MB/s"]
        print(f"| bare gRPC upload, {c} in flight | {up:.0f} | | |")
        print(f"| bare gRPC download, {c} in flight | {down:.0f} | | |")
    write_ceiling = raw_w / R
    for c in concurrencies:
        for mode in ("parallel", "chain"):
            value = report[f"dfs write {mode} c{c} MB/s"]
            print(f"| dfs write R=3 ({mode}), {c} in flight | {value:.0f} | "
                  f"{write_ceiling:.0f} (raw/R) | {value / write_ceiling:.2f} |")
    for c in concurrencies:
        ceiling = min(raw_r, report[f"grpc download c{c} MB/s"])
        value = report[f"dfs read c{c} MB/s"]
        print(f"| dfs read, {c} in flight | {value:.0f} | {ceiling:.0f} (min raw, gRPC) | "
              f"{value / ceiling:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
