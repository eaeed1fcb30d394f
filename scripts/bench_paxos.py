#!/usr/bin/env python3
"""Metadata log benchmark: committed KV commands/s and latency on 3 real `dfs meta`
replicas at several concurrencies, beside the ceilings measured in the same run
(fdatasync/s of the data dir's disk, bare gRPC unary round trips/s at the same
concurrency), and failover: repeated kill -9 of the leader under load.

Reports figures; asserts nothing about speed. Every acknowledged put is read
back at the end: a lost one makes the run fail.

    python scripts/bench_paxos.py [--seconds 5] [--concurrency 1,16,256] [--failovers 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import (  # noqa: E402
    Rate,
    fdatasync_rate,
    grpc_unary_ceilings,
    percentile,
    rate_from_latencies,
    running_meta_cluster,
)

from dfs.client.kv import KvClient  # noqa: E402
from dfs.client.retry import RetryPolicy  # noqa: E402
from tests.support.meta_cluster import MetaCluster  # noqa: E402
from tests.support.ports import free_addrs  # noqa: E402

POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=2.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wal_counters(cluster: MetaCluster) -> dict[int, tuple[int, int]]:
    counters = {}
    for node_id in cluster.replicas:
        status = cluster.status(node_id)
        if status is not None:
            counters[node_id] = (status.meta.wal_fsyncs, status.meta.commands_applied)
    return counters


async def load(cluster: MetaCluster, concurrency: int, seconds: float,
               acknowledged: dict[bytes, bytes]) -> Rate:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        i = 0
        while (begin := time.perf_counter()) < stop_at:
            key, value = f"c{concurrency}-w{n}-{i}".encode(), f"v{i}".encode() * 4
            await client.put(key, value)
            latencies.append(time.perf_counter() - begin)
            acknowledged[key] = value
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    return rate_from_latencies(latencies, elapsed)


async def failovers(cluster: MetaCluster, rounds: int,
                    acknowledged: dict[bytes, bytes]) -> list[float]:
    clients = [KvClient(cluster.addr_list, cluster.secret, POLICY) for _ in range(4)]
    for client in clients:
        await client.open()
    issue_times: list[float] = []
    results: list[float] = []

    async def writer(client: KvClient, name: str, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            key = f"{name}-{i}".encode()
            issued = time.monotonic()
            await client.put(key, key)
            acknowledged[key] = key
            issue_times.append(issued)
            i += 1

    for round_ in range(rounds):
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer(c, f"f{round_}w{n}", stop))
                 for n, c in enumerate(clients)]
        await asyncio.sleep(0.5)
        leader = cluster.leader()
        killed_at = time.monotonic()
        cluster.kill(leader)
        while not any(t > killed_at for t in issue_times[-16:]):
            await asyncio.sleep(0.005)
        results.append(time.monotonic() - killed_at)
        log(f"  failover {round_ + 1}/{rounds}: killed {leader}, writes resumed after "
            f"{results[-1]:.3f} s")
        stop.set()
        await asyncio.gather(*tasks)
        cluster.start(leader).wait_healthy(timeout_s=30)
    for client in clients:
        await client.close()
    return results


async def verify(cluster: MetaCluster, acknowledged: dict[bytes, bytes]) -> int:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    lost = 0
    for key, value in acknowledged.items():
        if await client.get(key) != value:
            lost += 1
    await client.close()
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,256")
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--dir", type=Path, help="where the replicas keep their data")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    report: dict[str, object] = {"seconds": args.seconds}
    log("ceilings: fdatasync and bare gRPC unary ...")
    fsync = fdatasync_rate(args.dir or Path(tempfile.gettempdir()), seconds=min(args.seconds, 3.0))
    (echo_addr,) = free_addrs(1)
    unary = grpc_unary_ceilings(echo_addr, concurrencies, args.seconds)
    with running_meta_cluster(parent=args.dir) as cluster:
        acknowledged: dict[bytes, bytes] = {}
        rows = []
        for concurrency in concurrencies:
            log(f"KV puts at {concurrency} in flight for {args.seconds:.0f} s ...")
            before = wal_counters(cluster)
            rate = asyncio.run(load(cluster, concurrency, args.seconds, acknowledged))
            after = wal_counters(cluster)
            fsyncs_per_command = max(
                (after[i][0] - before[i][0]) / max(1, after[i][1] - before[i][1])
                for i in after if i in before
            )
            floor_1 = 1 / (1 / fsync.ops_per_s + unary[1].p50_ms / 1e3)
            rows.append({
                "in_flight": concurrency, "commands_per_s": round(rate.ops_per_s),
                "p50_ms": round(rate.p50_ms, 2), "p99_ms": round(rate.p99_ms, 2),
                "bare_unary_per_s": round(unary[concurrency].ops_per_s),
                "ratio_to_unary": round(rate.ops_per_s / unary[concurrency].ops_per_s, 2),
                "fsyncs_per_command_per_replica": round(fsyncs_per_command, 3),
                "ratio_to_fsync_rtt_floor": round(rate.ops_per_s / floor_1, 2)
                if concurrency == 1 else None,
            })
        report["throughput"] = rows
        report["ceilings"] = {"fdatasync_per_s": round(fsync.ops_per_s),
                              "fdatasync_p50_ms": round(fsync.p50_ms, 3),
                              "unary_per_s": {c: round(r.ops_per_s) for c, r in unary.items()},
                              "unary_p50_ms_x1": round(unary[1].p50_ms, 3)}
        if args.failovers:
            log(f"failover: {args.failovers} x kill -9 of the leader under load ...")
            times = asyncio.run(failovers(cluster, args.failovers, acknowledged))
            times.sort()
            report["failover"] = {
                "rounds": len(times), "median_s": round(statistics.median(times), 3),
                "p99_s": round(percentile(times, 0.99), 3), "max_s": round(times[-1], 3),
            }
        log(f"verifying {len(acknowledged)} acknowledged puts ...")
        lost = asyncio.run(verify(cluster, acknowledged))
        report["acknowledged"] = len(acknowledged)
        report["lost"] = lost
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_tables(report)
    return 1 if report.get("lost") else 0


def print_tables(report: dict[str, object]) -> None:
    ceilings = report["ceilings"]
    assert isinstance(ceilings, dict)
    print(f"fdatasync: {ceilings['fdatasync_per_s']}/s (p50 {ceilings['fdatasync_p50_ms']} ms); "
          f"bare gRPC unary x1 p50 {ceilings['unary_p50_ms_x1']} ms")
    print("| in flight | commands/s | p50 ms | p99 ms | bare unary/s | ratio | "
          "fsyncs/cmd/replica | vs 1/(fsync+rtt) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = report["throughput"]
    assert isinstance(rows, list)
    for r in rows:
        floor = r["ratio_to_fsync_rtt_floor"]
        print(f"| {r['in_flight']} | {r['commands_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['bare_unary_per_s']} | {r['ratio_to_unary']} | "
              f"{r['fsyncs_per_command_per_replica']} | {floor if floor is not None else ''} |")
    if "failover" in report:
        f = report["failover"]
        assert isinstance(f, dict)
        print(f"failover over {f['rounds']} kills: median {f['median_s']} s, "
              f"p99 {f['p99_s']} s, max {f['max_s']} s")
    print(f"acknowledged puts: {report['acknowledged']}, lost: {report['lost']}")


if __name__ == "__main__":
    sys.exit(main())
