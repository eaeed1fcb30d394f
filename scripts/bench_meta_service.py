#!/usr/bin/env python3
"""Metadata service benchmark: creates/s, getattr/s and renames/s through the
client library against 3 real `dfs meta` replicas, with 1 and 64 concurrent
clients, beside the bare gRPC unary rate at the same concurrency and the
sequential floor 1 / (one round trip + one fsync), all measured in the same run.

    python scripts/bench_meta_service.py [--seconds 5] [--clients 1,64]

Reports figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import (  # noqa: E402
    Rate,
    fdatasync_rate,
    grpc_unary_ceilings,
    rate_from_latencies,
    running_meta_cluster,
)

from dfs.client.meta import MetaClient  # noqa: E402
from dfs.client.retry import RetryPolicy  # noqa: E402
from dfs.rpc import common_pb2  # noqa: E402
from tests.support.meta_cluster import MetaCluster  # noqa: E402
from tests.support.ports import free_addrs  # noqa: E402

ROOT_CALLER = common_pb2.Caller(uid=0, gid=0)
Op = Callable[[MetaClient, int, int], Awaitable[object]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def measure(cluster: MetaCluster, clients_count: int, seconds: float, name: str) -> Rate:
    clients = [MetaClient(cluster.addr_list, cluster.secret, RetryPolicy(deadline_s=30))
               for _ in range(clients_count)]
    for client in clients:
        await client.open()
    top = await clients[0].mkdir(ROOT_CALLER, 1, f"{name}-{clients_count}-{time.time_ns()}"
                                 .encode(), 0o755)
    dirs = [await clients[0].mkdir(ROOT_CALLER, top.ino, f"c{n}".encode(), 0o755)
            for n in range(clients_count)]
    if name != "create":  # getattr and rename need a file per client
        for client, d in zip(clients, dirs, strict=True):
            await client.create(ROOT_CALLER, d.ino, b"f0", 0o644)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(client: MetaClient, parent: int) -> None:
        i = 0
        while (begin := time.perf_counter()) < stop_at:
            if name == "create":
                await client.create(ROOT_CALLER, parent, f"f{i}".encode(), 0o644)
            elif name == "getattr":
                await client.getattr(ROOT_CALLER, parent)
            else:
                await client.rename(ROOT_CALLER, parent, f"f{i}".encode(), parent,
                                    f"f{i + 1}".encode())
            latencies.append(time.perf_counter() - begin)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, d.ino) for c, d in zip(clients, dirs, strict=True)))
    elapsed = time.perf_counter() - start
    for client in clients:
        await client.close()
    return rate_from_latencies(latencies, elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,64")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    rows = []
    log("ceilings ...")
    fsync = fdatasync_rate(Path(tempfile.gettempdir()), seconds=min(args.seconds, 3.0))
    (echo_addr,) = free_addrs(1)
    unary = grpc_unary_ceilings(echo_addr, counts, args.seconds)
    with running_meta_cluster() as cluster:
        floor = 1 / (1 / fsync.ops_per_s + unary[1].p50_ms / 1e3)
        for count in counts:
            for name in ("create", "getattr", "rename"):
                log(f"{name} with {count} clients ...")
                rate = asyncio.run(measure(cluster, count, args.seconds, name))
                row = {"op": name, "clients": count, "ops_per_s": round(rate.ops_per_s),
                       "p50_ms": round(rate.p50_ms, 2), "p99_ms": round(rate.p99_ms, 2),
                       "bare_unary_per_s": round(unary[count].ops_per_s),
                       "ratio_to_unary": round(rate.ops_per_s / unary[count].ops_per_s, 2)}
                if count == 1 and name != "getattr":
                    row["ratio_to_rtt_fsync_floor"] = round(rate.ops_per_s / floor, 2)
                rows.append(row)
    if args.json:
        print(json.dumps({"rows": rows, "fdatasync_per_s": round(fsync.ops_per_s),
                          "floor_per_s": round(floor)}, indent=2))
        return 0
    print(f"fdatasync {fsync.ops_per_s:.0f}/s; bare unary x1 p50 {unary[1].p50_ms:.2f} ms; "
          f"sequential floor 1/(rtt+fsync) = {floor:.0f}/s")
    print("| op | clients | ops/s | p50 ms | p99 ms | bare unary/s | ratio | vs floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['clients']} | {r['ops_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['bare_unary_per_s']} | {r['ratio_to_unary']} | "
              f"{r.get('ratio_to_rtt_fsync_floor', '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
