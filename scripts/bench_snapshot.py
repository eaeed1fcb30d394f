#!/usr/bin/env python3
"""Snapshot and leadership-transfer figures for the metadata group.

1. In process: the replicated state with N KV keys (default 1M): time the stall
   of capturing a snapshot (begin), the stepped encoding, the size, and restore.
2. Three real replicas: commit latency at 16 puts in flight with snapshots every
   K slots vs. with no snapshots, measured in the same run.
3. Three real replicas: the longest gap between acknowledged puts around a
   `dfs admin meta transfer-leader`, and the time until the target leads.
4. Three real replicas that start from a snapshot of N keys (written into their
   data dirs before they start, as a group that chose N puts long ago would hold):
   commit latency while they snapshot that state every K slots vs. never, and the
   time a 4th replica that joins takes to catch up (snapshot transfer + install).

    python scripts/bench_snapshot.py [--keys 1000000] [--seconds 8] [--skip-small]

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

from dfs.auth import read_secret  # noqa: E402
from dfs.client.kv import KvClient  # noqa: E402
from dfs.client.retry import RetryPolicy  # noqa: E402
from dfs.datadir import Identity, claim  # noqa: E402
from dfs.meta.replicated import MetaStateMachine  # noqa: E402
from dfs.paxos import kv  # noqa: E402
from dfs.paxos import snapshot as snapshot_files  # noqa: E402
from dfs.paxos.config import Config  # noqa: E402
from dfs.paxos.node import SNAPSHOT_DIR  # noqa: E402
from tests.support.meta_cluster import DFS, MetaCluster  # noqa: E402
from tests.support.ports import free_addrs  # noqa: E402

POLICY = RetryPolicy(deadline_s=30, attempt_timeout_s=2.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


SEED_SLOT = 1_000_000  # the slot the seeded snapshot claims to cover


def filled_machine(keys: int) -> MetaStateMachine:
    machine = MetaStateMachine(10**12)
    for i in range(keys):
        machine.kv.execute(kv.Put(b"key-%09d" % i, b"value-%09d" % i))
    return machine


def in_process(keys: int) -> dict[str, float]:
    machine = filled_machine(keys)
    start = time.perf_counter()
    machine.begin_snapshot()
    begin_s = time.perf_counter() - start
    longest_step_s = 0.0
    while True:
        step_start = time.perf_counter()
        done = machine.snapshot_step(2000)
        longest_step_s = max(longest_step_s, time.perf_counter() - step_start)
        if done:
            break
    finish_start = time.perf_counter()
    data = machine.finish_snapshot()
    finish_s = time.perf_counter() - finish_start
    encode_s = time.perf_counter() - start
    restored = MetaStateMachine(10**12)
    start = time.perf_counter()
    restored.restore(data)
    restore_s = time.perf_counter() - start
    return {"keys": keys, "stall_ms": begin_s * 1e3, "snapshot_s": encode_s,
            "longest_step_ms": longest_step_s * 1e3, "finish_ms": finish_s * 1e3,
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


def with_cluster(snapshot_every: int, action, prepare=None):  # type: ignore[no-untyped-def]
    with running_meta_cluster(["--snapshot-every", str(snapshot_every)],
                              prepare=prepare) as cluster:
        return action(cluster)


def seeding(payload: bytes):  # type: ignore[no-untyped-def]
    """A `prepare` step: every replica's data dir starts with the same snapshot."""
    def seed(cluster: MetaCluster) -> None:
        cluster_id = read_secret(cluster.secret_file).cluster_id
        config = Config.of(cluster.addrs)
        for node_id in cluster.addrs:
            data_dir = cluster.procs.base_dir / f"meta{node_id}"
            claim(data_dir, Identity("meta", node_id, cluster_id))
            snapshot_files.write(data_dir / SNAPSHOT_DIR, SEED_SLOT, config, payload)
    return seed


def snapshot_log_lines(cluster: MetaCluster) -> list[str]:
    return [line for proc in cluster.replicas.values()
            for line in proc.log_path.read_text().splitlines()
            if "snapshot at slot" in line and "0 bytes" not in line]


def load_while_snapshotting(cluster: MetaCluster, seconds: float) -> tuple[Rate, list[str]]:
    rate = asyncio.run(load(cluster, seconds))
    return rate, snapshot_log_lines(cluster)


def join_catch_up(cluster: MetaCluster) -> dict[str, float]:
    """A 4th replica joins through the leader; time until it has applied what the
    leader had applied when it was started."""
    leader = cluster.leader()
    status = cluster.status(leader, timeout_s=10)
    assert status is not None
    target = status.meta.applied
    (addr,) = free_addrs(1)
    data_dir = cluster.procs.base_dir / "meta4"
    started = time.perf_counter()
    proc = cluster.procs.start("meta4", [
        *DFS, "meta", "--id", "4", "--listen", addr, "--join", cluster.addrs[leader],
        "--data-dir", str(data_dir), "--secret", str(cluster.secret_file)], addr=addr)
    cluster.addrs[4], cluster.replicas[4] = addr, proc
    while True:
        assert proc.alive(), proc.log_tail()
        joined = cluster.status(4, timeout_s=5) if proc.alive() else None
        if joined is not None and joined.meta.applied >= target:
            break
        assert time.perf_counter() - started < 900, "the new replica never caught up"
        time.sleep(0.1)
    took = time.perf_counter() - started
    installed = [line for line in proc.log_path.read_text().splitlines()
                 if "installed a snapshot" in line]
    size = sum(p.stat().st_size for p in (data_dir / SNAPSHOT_DIR).glob("*.snap"))
    return {"catch_up_s": took, "snapshot_mb": size / 1e6, "installs": len(installed)}


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
    parser.add_argument("--big-snapshot-every", type=int, default=100,
                        help="slots between snapshots of the seeded (large) state")
    parser.add_argument("--skip-small", action="store_true",
                        help="only the seeded (large state) figures")
    args = parser.parse_args()
    if not args.skip_small:
        small_state(args)
    large_state(args)
    return 0


def large_state(args: argparse.Namespace) -> None:
    log(f"seeded replicas with {args.keys} keys: building the snapshot ...")
    payload = filled_machine(args.keys).snapshot()
    print(f"seeded snapshot payload of {args.keys:,} keys: {len(payload) / 1e6:.1f} MB")
    log("commit latency, seeded state, no snapshots ...")
    plain, _ = with_cluster(10**9, lambda c: load_while_snapshotting(c, args.seconds),
                            seeding(payload))
    log(f"commit latency, seeded state, a snapshot every {args.big_snapshot_every} slots ...")
    snapped, lines = with_cluster(args.big_snapshot_every,
                                  lambda c: load_while_snapshotting(c, args.seconds),
                                  seeding(payload))
    print(f"{args.keys:,} keys, 16 in flight, no snapshots: {plain.row()}")
    print(f"{args.keys:,} keys, 16 in flight, snapshot every {args.big_snapshot_every}: "
          f"{snapped.row()}")
    print(f"p99 difference: {snapped.p99_ms - plain.p99_ms:+.1f} ms; "
          f"{len(lines)} snapshots taken meanwhile (all replicas):")
    for line in lines:
        print("   ", line.split("INFO dfs.paxos.node: ")[-1])
    log("a 4th replica joins and catches up ...")
    caught = with_cluster(10**9, join_catch_up, seeding(payload))
    print(f"new replica catches up {args.keys:,} keys: {caught['catch_up_s']:.1f} s from its "
          f"start ({caught['installs']:.0f} snapshot install(s), "
          f"{caught['snapshot_mb']:.1f} MB on its disk)")


def small_state(args: argparse.Namespace) -> None:
    log(f"in-process snapshot of {args.keys} keys ...")
    local = in_process(args.keys)
    print(f"KV state of {local['keys']:,} keys: capture stall {local['stall_ms']:.0f} ms, "
          f"stepped snapshot {local['snapshot_s']:.2f} s (longest step "
          f"{local['longest_step_ms']:.1f} ms, final join {local['finish_ms']:.0f} ms), "
          f"{local['size_mb']:.1f} MB, "
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


if __name__ == "__main__":
    sys.exit(main())
