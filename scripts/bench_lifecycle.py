#!/usr/bin/env python3
"""Data lifecycle benchmark on real processes (3 `dfs meta`, 4 then 5 `dfs data`,
R = 3, default scrub and repair rates): foreground write and read throughput alone,
during a scrub and during a repair; repair throughput after a server is killed and
marked out; bytes moved when a server is added, against `ring plan` and the ideal
1/N. Every file is read back and compared at the end. Reports figures; asserts
nothing about speed. Run it under `flock /tmp/dfs-bench.lock` on a quiet machine.

    python scripts/bench_lifecycle.py [--files 32] [--window-s 20] [--json]

Anti-entropy passes run every 2 s instead of 10 (--pass-interval-s), so a repair
starts without waiting out a production pass period; rates are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dfs.admin.common import Target, leader_addr  # noqa: E402
from dfs.auth import init_cluster_dir, sync_channel  # noqa: E402
from dfs.client.data import FileData  # noqa: E402
from dfs.client.meta import MetaClient  # noqa: E402
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2  # noqa: E402
from tests.support.data_cluster import ROOT as CALLER  # noqa: E402
from tests.support.data_cluster import (  # noqa: E402
    ROOT_INO,
    DataCluster,
    WrittenFile,
    make_data_cluster,
    open_client,
)
from tests.support.meta_cluster import make_meta_cluster  # noqa: E402
from tests.support.ports import free_addrs  # noqa: E402
from tests.support.procs import ProcessSet  # noqa: E402

FILE_BYTES = 4 * 1024 * 1024
MB = 1e6
R = 3
CONCURRENCY = 4
SETTLE_TIMEOUT_S = 600.0
LEADER_ATTEMPTS = 30


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Admin:
    """The few admin calls the benchmark makes, at the metadata leader."""

    def __init__(self, cluster: DataCluster) -> None:
        self.cluster = cluster
        self.target = Target(cluster.meta.addr_list, cluster.meta.secret)

    def _at_leader(self, method: str, request: Any, timeout: float = 30) -> Any:
        """One call at the leader; a leader change or a refused connection on a loaded
        machine is retried for a while, not fatal to a long run."""
        for attempt in range(LEADER_ATTEMPTS):
            try:
                with sync_channel(leader_addr(self.target), self.target.secret) as channel:
                    return getattr(admin_pb2_grpc.AdminStub(channel), method)(
                        request, timeout=timeout)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == LEADER_ATTEMPTS - 1:
                    raise
            time.sleep(1.0)
        raise AssertionError("unreachable")

    def out(self, server_id: int) -> None:
        reply = self._at_leader("DataOut", admin_pb2.DataMemberRequest(id=server_id))
        assert reply.ok, reply.message

    def data_list(self) -> admin_pb2.DataListReply:
        reply: admin_pb2.DataListReply = self._at_leader("DataList", common_pb2.Empty())
        return reply

    def plan(self, action: str, server_id: int, addr: str = "") -> admin_pb2.RingPlanReply:
        reply: admin_pb2.RingPlanReply = self._at_leader(
            "RingPlan",
            admin_pb2.RingPlanRequest(action=action, id=server_id, addr=addr, weight=1),
            timeout=120)
        return reply

    def data_status(self, server_id: int) -> admin_pb2.DataStatus | None:
        addr = self.cluster.addrs[server_id]
        with sync_channel(addr, self.target.secret) as channel:
            try:
                reply = admin_pb2_grpc.AdminStub(channel).Status(
                    admin_pb2.StatusRequest(), timeout=10)
            except Exception:
                return None
        return reply.data

    def pushed_bytes(self, server_ids: list[int]) -> int:
        return sum(s.pushed_bytes for i in server_ids if (s := self.data_status(i)) is not None)

    def scrub_start(self, server_ids: list[int]) -> None:
        for server_id in server_ids:
            with sync_channel(self.cluster.addrs[server_id], self.target.secret) as channel:
                admin_pb2_grpc.AdminStub(channel).ScrubStart(admin_pb2.ScrubRequest(),
                                                             timeout=10)

    async def settled(self, epoch_at_least: int) -> float:
        """Wait until every up server passed at the current epoch with nothing under-
        replicated or misplaced; the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < SETTLE_TIMEOUT_S:
            listing = await asyncio.to_thread(self.data_list)
            if (listing.ring_epoch >= epoch_at_least and listing.settled
                    and listing.under_replicated == 0 and listing.misplaced == 0):
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise TimeoutError("the cluster did not settle")


async def write_files(client: MetaClient, files: FileData, prefix: str, count: int,
                      seed: int) -> tuple[list[WrittenFile], float]:
    """count files of FILE_BYTES, CONCURRENCY at a time; (files, MB/s)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    written: list[WrittenFile] = []

    async def one(index: int) -> None:
        async with gate:
            attr = await client.create(CALLER, ROOT_INO, f"{prefix}{index}".encode(), 0o644)
            item = WrittenFile(attr.ino, seed + index, FILE_BYTES)
            await files.write(CALLER, attr.ino, 0, item.content())
            written.append(item)

    started = time.monotonic()
    await asyncio.gather(*(one(index) for index in range(count)))
    return written, count * FILE_BYTES / MB / (time.monotonic() - started)


async def read_files(files: FileData, written: list[WrittenFile]) -> float:
    """Read every file back (CONCURRENCY at a time) and compare; MB/s."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: WrittenFile) -> None:
        async with gate:
            got = await files.read(CALLER, item.ino, 0, item.size)
            assert got == item.content(), f"inode {item.ino} differs"

    started = time.monotonic()
    await asyncio.gather(*(one(item) for item in written))
    return sum(i.size for i in written) / MB / (time.monotonic() - started)


class Foreground:
    """A steady client load: write a 4 MiB file, read it back, over and over, with
    CONCURRENCY loops; every completed operation is logged with its end time, so the
    throughput of any time window can be told afterwards."""

    def __init__(self, client: MetaClient, files: FileData) -> None:
        self.client, self.files = client, files
        self.done: list[tuple[float, str, int]] = []  # (monotonic end, "write"|"read", bytes)
        self.written: list[WrittenFile] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._loop(n)) for n in range(CONCURRENCY)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, loop_number: int) -> None:
        round_number = 0
        while not self._stop.is_set():
            round_number += 1
            name = f"fg{loop_number}-{round_number}"
            attr = await self.client.create(CALLER, ROOT_INO, name.encode(), 0o644)
            item = WrittenFile(attr.ino, hash(name) & 0xFFFFFFF, FILE_BYTES)
            await self.files.write(CALLER, attr.ino, 0, item.content())
            self.done.append((time.monotonic(), "write", FILE_BYTES))
            self.written.append(item)
            got = await self.files.read(CALLER, attr.ino, 0, FILE_BYTES)
            assert got == item.content(), f"{name} read back wrong"
            self.done.append((time.monotonic(), "read", FILE_BYTES))

    def mbps(self, kind: str, since: float, until: float) -> float:
        moved = sum(n for at, k, n in self.done if k == kind and since <= at < until)
        return moved / MB / (until - since)

    async def window(self, seconds: float) -> tuple[float, float]:
        """(write, read) MB/s over the next `seconds`."""
        since = time.monotonic()
        await asyncio.sleep(seconds)
        until = time.monotonic()
        return self.mbps("write", since, until), self.mbps("read", since, until)


async def run(cluster: DataCluster, args: argparse.Namespace, new_addr: str,
              base: Path) -> dict[str, Any]:
    admin = Admin(cluster)
    client, files = await open_client(cluster)
    report: dict[str, Any] = {"files": args.files, "file_bytes": FILE_BYTES, "replicas": R}
    try:
        log(f"writing {args.files} files of 4 MiB")
        dataset, report["dataset_write_mbps"] = await write_files(
            client, files, "data", args.files, random.randrange(1 << 30))
        await admin.settled(0)
        log("repair after server 4 is killed and marked out (no foreground load)")
        await admin.settled(0)
        report["repair_expected_bytes"] = admin.plan("out", 4).bytes_moved
        pushed_before = admin.pushed_bytes([1, 2, 3])
        cluster.kill(4)
        epoch = admin.data_list().ring_epoch
        started = time.monotonic()
        admin.out(4)
        await admin.settled(epoch + 1)
        repair_s = time.monotonic() - started
        repaired = admin.pushed_bytes([1, 2, 3]) - pushed_before
        report["repair_bytes"] = repaired
        report["repair_s"] = repair_s
        report["repair_mbps"] = repaired / MB / repair_s

        log("rebalance: server 5 joins")
        plan = admin.plan("add", 5, new_addr)
        pushed_before = admin.pushed_bytes([1, 2, 3])
        epoch = admin.data_list().ring_epoch
        cluster.addrs[5] = new_addr
        cluster.data_dirs[5] = base / "data5"
        started = time.monotonic()
        cluster.start(5).wait_healthy(timeout_s=60)
        await admin.settled(epoch + 1)
        report["rebalance_s"] = time.monotonic() - started
        moved = admin.pushed_bytes([1, 2, 3]) - pushed_before
        report["rebalance_bytes_moved"] = moved
        report["rebalance_bytes_total"] = plan.bytes_total * R
        report["rebalance_moved_fraction"] = moved / (plan.bytes_total * R)
        report["rebalance_plan_bytes"] = plan.bytes_moved
        report["rebalance_plan_fraction"] = plan.copies_moved / max(plan.copies_before, 1)
        report["rebalance_ideal_fraction"] = 1 / 4

        log("foreground alone, during a repair (server 5 killed and marked out), during a "
            "scrub")
        await admin.settled(0)
        foreground = Foreground(client, files)
        foreground.start()
        report["baseline_write_mbps"], report["baseline_read_mbps"] = await foreground.window(
            args.window_s)
        pushed_before = admin.pushed_bytes([1, 2, 3])
        cluster.kill(5)
        epoch = admin.data_list().ring_epoch
        started = time.monotonic()
        admin.out(5)
        await admin.settled(epoch + 1)
        finished = time.monotonic()
        report["loaded_repair_s"] = finished - started
        report["loaded_repair_mbps"] = ((admin.pushed_bytes([1, 2, 3]) - pushed_before) / MB
                                        / report["loaded_repair_s"])
        report["repair_write_mbps"] = foreground.mbps("write", started, finished)
        report["repair_read_mbps"] = foreground.mbps("read", started, finished)
        report["after_write_mbps"], report["after_read_mbps"] = await foreground.window(
            args.window_s)
        admin.scrub_start([1, 2, 3])
        report["scrub_write_mbps"], report["scrub_read_mbps"] = await foreground.window(
            args.window_s)
        report["scrub_rate_bytes_s"] = (admin.data_status(1) or admin_pb2.DataStatus()).scrub_rate
        report["scrub_still_running"] = all(
            (admin.data_status(i) or admin_pb2.DataStatus()).scrub_running for i in (1, 2, 3))
        await foreground.stop()

        log("reading every file back")
        await read_files(files, dataset + foreground.written)
    finally:
        await files.close()
        await client.close()
    return report


def print_report(r: dict[str, Any]) -> None:
    print(f"dataset: {r['files']} files of 4 MiB, R = {r['replicas']}, written at "
          f"{r['dataset_write_mbps']:.1f} MB/s")
    print(f"{'foreground (MB/s)':<34} {'write':>7} {'read':>7}")
    for label, key in (("alone", "baseline"), ("during a repair", "repair"),
                       ("alone, after the repair", "after"), ("during a scrub", "scrub")):
        print(f"{label:<34} {r[key + '_write_mbps']:>7.1f} {r[key + '_read_mbps']:>7.1f}")
    print(f"scrub rate limit: {r['scrub_rate_bytes_s'] / MB:.1f} MB/s per server (still "
          f"running at the window's end: {r['scrub_still_running']})")
    print(f"repair after a loss: {r['repair_bytes'] / MB:.1f} MB in {r['repair_s']:.1f} s = "
          f"{r['repair_mbps']:.1f} MB/s (ring plan: {r['repair_expected_bytes'] / MB:.1f} MB); "
          f"with foreground load {r['loaded_repair_mbps']:.1f} MB/s")
    print(f"rebalance (add a 4th live server): moved {r['rebalance_bytes_moved'] / MB:.1f} MB "
          f"of {r['rebalance_bytes_total'] / MB:.1f} MB = {r['rebalance_moved_fraction']:.1%} "
          f"(plan {r['rebalance_plan_fraction']:.1%}, ideal 1/N = "
          f"{r['rebalance_ideal_fraction']:.0%}) in {r['rebalance_s']:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=32, help="4 MiB files in the dataset")
    parser.add_argument("--window-s", type=float, default=20.0,
                        help="seconds of foreground load measured alone and during a scrub")
    parser.add_argument("--dir", type=Path, help="where servers keep their data")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-lifecycle-", dir=args.dir))
    secret_file, _ = init_cluster_dir(base / "cluster")
    procs = ProcessSet(base)
    load_before = os.getloadavg()[0]
    try:
        meta = make_meta_cluster(procs, secret_file)
        meta.start_all()
        cluster = make_data_cluster(meta, count=4, extra_args=["--pass-interval-s", "2"])
        cluster.start_all()
        report = asyncio.run(run(cluster, args, free_addrs(1)[0], base))
    finally:
        procs.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    report["load_average_before"] = load_before
    report["load_average_after"] = os.getloadavg()[0]
    print_report(report)
    print(f"1-minute load average {load_before:.1f} before, "
          f"{report['load_average_after']:.1f} after")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
