#!/usr/bin/env python3
"""Snapshot and leadership-transfer figures for the metadata group.

1. In process: the replicated state with N KV keys (default 1M): time the stall
   of capturing a snapshot (begin), the stepped encoding, the size, and restore.
2. Three real replicas: commit latency at 16 puts in flight with snapshots every
   K slots vs. with no snapshots, measured in the same run.
3. Three real replicas: the longest gap between acknowledged puts around a
   `dfs admin meta transfer-leader`, and the time until the target leads.

    python scripts/bench_snapshot.py [--keys 1000000] [--seconds 8]

Reports figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import Rate, rate_from_latencies, running_meta_cluster  # noqa: E402

from dfs.client.kv import KvClient  # noqa: E402
from dfs.client.retry import RetryPolicy  # noqa: E402
from dfs.meta.replicated import MetaStateMachine  # noqa: E402
from dfs.paxos import kv  # noqa: E402
from tests.support.meta_cluster import MetaCluster  # noqa: E402

POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=2.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def in_process(keys: int) -> dict[str, float]:
    machine = MetaStateMachine(10**12)
    for i in range(keys):
        machine.kv.execute(kv.Put(b"key-%09d" % i, b"value-%09d" % i))
    start = time.perf_counter()
    machine.begin_snapshot()
    begin_s = time.perf_counter() - start
    while not machine.snapshot_step(2000):
        pass
    data = machine.finish_snapshot()
    encode_s = time.perf_counter() - start
    restored = MetaStateMachine(10**12)
    start = time.perf_counter()
    restored.restore(data)
    restore_s = time.perf_counter() - start
    return {"keys": keys, "stall_ms": begin_s * 1e3, "snapshot_s": encode_s,
            "size_mb": len(data) / 1e6, "restore_s": restore_s}


async def load(cluster: MetaCluster, seconds: float, gaps: list[float] | None = None) -> Rate:
    client = KvClient(cluster.addr_list, cluster.secret, POLICY)
    await client.open()
    latencies: list[float] = []
    last_ack = [time.perf_counter()]
    stop_at = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        i = 0
        while (begin := time.perf_counter()) < stop_at:
            await client.put(b"w%d-%d" % (n, i), b"x" * 64)
            now = time.perf_counter()
            latencies.append(now - begin)
            if gaps is not None:
                gaps.append(now - last_ack[0])
            last_ack[0] = now
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(16)))
    rate = rate_from_latencies(latencies, time.perf_counter() - start)
    await client.close()
    return rate


def with_cluster(snapshot_every: int, action):  # type: ignore[no-untyped-def]
    with running_meta_cluster(["--snapshot-every", str(snapshot_every)]) as cluster:
        return action(cluster)


def transfer_pause(cluster: MetaCluster, seconds: float) -> dict[str, float]:
    gaps: list[float] = []

    async def scenario() -> float:
        task = asyncio.create_task(load(cluster, seconds, gaps))
        await asyncio.sleep(seconds / 2)
        old = cluster.leader()
        target = next(i for i in cluster.replicas if i != old)
        asked = time.perf_counter()
        await asyncio.to_thread(cluster.admin, "meta", "transfer-leader", str(target))
        while cluster.leader() != target:
            await asyncio.sleep(0.01)
        took = time.perf_counter() - asked
        await task
        return took

    took = asyncio.run(scenario())
    return {"longest_gap_ms": max(gaps) * 1e3, "target_leads_after_ms": took * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--snapshot-every", type=int, default=1000)
    args = parser.parse_args()
    log(f"in-process snapshot of {args.keys} keys ...")
    local = in_process(args.keys)
    print(f"KV state of {local['keys']:,} keys: capture stall {local['stall_ms']:.0f} ms, "
          f"stepped snapshot {local['snapshot_s']:.2f} s, {local['size_mb']:.1f} MB, "
          f"restore {local['restore_s']:.2f} s")
    log("commit latency without snapshots ...")
    plain = with_cluster(10**9, lambda c: asyncio.run(load(c, args.seconds)))
    log(f"commit latency with a snapshot every {args.snapshot_every} slots ...")
    snapped = with_cluster(args.snapshot_every, lambda c: asyncio.run(load(c, args.seconds)))
    print(f"16 in flight, no snapshots:            {plain.row()}")
    print(f"16 in flight, snapshot every {args.snapshot_every:>5}:  {snapped.row()}")
    print(f"p99 difference: {snapped.p99_ms - plain.p99_ms:+.1f} ms")
    log("leadership transfer under load ...")
    pause = with_cluster(10**9, lambda c: transfer_pause(c, args.seconds))
    print(f"transfer under load: target leads after {pause['target_leads_after_ms']:.0f} ms "
          f"(including the admin CLI's start-up); longest gap between acks "
          f"{pause['longest_gap_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
