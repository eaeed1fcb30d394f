"""One fault run: network, cluster, workloads, nemesis, heal, checks, cleanup.

Used by the short run in `make test` (tests/faults/test_fault_run.py) and by
scripts/faults.py for long runs. Whatever happens, everything the run created is
removed at the end; a run killed outright leaves a ledger for `--cleanup`.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dfs.faults.files import lost_acknowledged, mixed_reads
from dfs.faults.history import History, Operation, dump_operations
from dfs.faults.linearizable import DirectoryModel, check_history, first_violation
from tests.faults.cluster import NsCluster, start_cluster
from tests.faults.nemesis import AT_LEAST_ONCE, Nemesis
from tests.faults.netns import Network, cleanup_leftovers
from tests.faults.workloads import (
    FileRecords,
    KvWorkload,
    directory_worker,
    shared_file_reader,
    shared_file_rewriter,
    small_file_writer,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    seed: int
    duration_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    kv_ops: int = 0
    kv_answered: int = 0
    dir_ops: int = 0
    files_acked: int = 0
    files_attempted: int = 0
    shared_reads: int = 0
    lost: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    failovers_s: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.violations

    def summary(self) -> str:
        failover = ""
        if self.failovers_s:
            ordered = sorted(self.failovers_s)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            failover = (f"; failover over {len(ordered)} leader kills: median "
                        f"{statistics.median(ordered):.2f} s, p99 {p99:.2f} s")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        return (f"seed {self.seed}: {sum(self.faults.values())} faults in "
                f"{self.duration_s:.0f} s ({kinds}); KV ops {self.kv_ops} "
                f"({self.kv_answered} answered); directory ops {self.dir_ops}; "
                f"files acked {self.files_acked}/"
                f"{self.files_attempted}; shared-file reads {self.shared_reads}; "
                f"acked writes lost {len(self.lost)}; violations {len(self.violations)}"
                f"{failover}")


def run_faults(base: Path, seed: int, fault_time_s: float, planted: str = "",
               kinds: list[str] | None = None, hold_s: tuple[float, float] = (0.2, 0.8),
               min_faults: int = 0, progress: Callable[[str], None] = log.info) -> RunResult:
    """Faults for `fault_time_s` (and at least `min_faults`), then heal and check."""
    cleanup_leftovers()
    rng = random.Random(seed)
    result = RunResult(seed)
    started = time.monotonic()
    network = Network()
    cluster: NsCluster | None = None
    try:
        cluster = start_cluster(network, base / network.prefix, planted)
        progress(f"cluster up in {time.monotonic() - started:.1f} s ({network.subnet})")
        _run_with_faults(cluster, rng, seed, fault_time_s, kinds, hold_s, min_faults,
                         result, base, progress)
    finally:
        if cluster is not None:
            cluster.stop()
        network.close()
    result.duration_s = time.monotonic() - started
    return result


def _run_with_faults(cluster: NsCluster, rng: random.Random, seed: int,
                     fault_time_s: float, kinds: list[str] | None,
                     hold_s: tuple[float, float], min_faults: int, result: RunResult,
                     base: Path, progress: Callable[[str], None]) -> None:
    history = History(time.monotonic)
    dir_history = History(time.monotonic)
    records = FileRecords()
    reader_mount = cluster.start_mount("rmnt")
    stop = threading.Event()
    kv = KvWorkload(cluster.meta.addr_list, cluster.meta.secret, history, seed)
    workers = [
        threading.Thread(target=kv.run, args=(stop,), name="kv", daemon=True),
        *(threading.Thread(target=small_file_writer, args=(cluster.mnt, records, w, seed, stop),
                           name=f"writer{w}", daemon=True) for w in (1, 2)),
        threading.Thread(target=shared_file_rewriter, args=(cluster.mnt, records, seed, stop),
                         name="rewriter", daemon=True),
        *(threading.Thread(target=directory_worker,
                           args=(cluster.mnt, dir_history, c, seed, stop), name=f"dir{c}",
                           daemon=True)
          for c in (1, 2)),
        threading.Thread(target=shared_file_reader, args=(reader_mount.path, records, seed,
                                                          stop), name="reader",
                         daemon=True),
    ]
    nemesis = Nemesis(cluster, rng, hold_s, kinds)
    try:
        for worker in workers:
            worker.start()
        time.sleep(1.0)  # some history before the first fault
        deadline = time.monotonic() + fault_time_s
        while time.monotonic() < deadline or sum(nemesis.log.faults.values()) < min_faults:
            second_half = time.monotonic() > deadline - fault_time_s / 2
            nemesis.one_fault([k for k in AT_LEAST_ONCE if second_half
                               and not nemesis.log.faults[k]])
            time.sleep(rng.uniform(0.05, 0.2))
        progress(f"{sum(nemesis.log.faults.values())} faults injected; healing")
        nemesis.heal_all()
        progress("healed")
        time.sleep(1.0)  # a little history after the heal
    finally:
        nemesis.close()
        stop.set()
        join_deadline = time.monotonic() + 120  # one bound for all: a hung mount stops none
        for worker in workers:
            worker.join(timeout=max(0.1, join_deadline - time.monotonic()))
        hung = [worker.name for worker in workers if worker.is_alive()]
        if hung:
            result.violations.append(f"workloads still blocked 120 s after the end: {hung}")
    progress("workloads stopped; checking")
    result.faults = nemesis.log.faults
    result.failovers_s = nemesis.log.failovers_s
    result.events = nemesis.log.events
    try:
        _check(reader_mount.path, history.operations(), records, result, base)
        _check_directories(dir_history.operations(), result, base)
    finally:
        reader_mount.stop()
    progress("checked")


def _check_directories(ops: list[Operation], result: RunResult, base: Path) -> None:
    result.dir_ops = len(ops)
    bad_dir = first_violation(ops, DirectoryModel())
    if bad_dir is not None:
        result.violations.append(f"directory history of {bad_dir!r} is not linearizable")
        (base / f"dir-history-{result.seed}.jsonl").write_text(dump_operations(ops))


def read_uncached(path: Path) -> bytes | None:
    """The file's bytes from the cluster, not from a page cache (None: missing, or
    unreadable, as when no server holds one of its chunks any more)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop clean cached pages
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as err:
        log.warning("final read of %s: %s", path, err)
        return None
    finally:
        os.close(fd)


def _check(mnt: Path, ops: list[Operation], records: FileRecords,
           result: RunResult, base: Path) -> None:
    result.kv_ops = len(ops)
    result.kv_answered = sum(op.answered for op in ops)
    bad_key = check_history(ops)
    if bad_key is not None:
        result.violations.append(f"KV history of key {bad_key!r} is not linearizable")
        (base / f"history-{result.seed}.jsonl").write_text(dump_operations(ops))
    result.shared_reads = len(records.reads)
    result.violations += mixed_reads(records.versions, records.reads)
    final = {path: read_uncached(mnt / path) for path in records.versions}
    result.files_attempted = sum(len(v.attempts) for v in records.versions.values())
    result.files_acked = sum(
        sum(acked for _, acked in v.attempts) for v in records.versions.values())
    result.lost = lost_acknowledged(records.versions, final)
