"""Failover figures: how long clients wait when a server goes away.

Metadata: the leader is killed (-9) or paused (SIGSTOP, resumed once a client got
through) again and again while a mount's clients work continuously (a directory
workload and a small-file writer). Each fault is timed from the signal to the first
metadata operation issued after it that completes: a fresh mkdir probed at the
signal, and the directory workload's next operation. Data: a data server is killed
(-9) while a reader on a second mount, every cache off, reads a file across all its
chunks; timed to the first read issued after the kill that returns the right bytes.

Each leader fault's time is split using the replicas' logs: when a new leader took
office, and how long the client took after that. At the end every acknowledged file
is read back byte for byte and the directory history is checked.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dfs.faults.files import lost_acknowledged
from dfs.faults.history import History, Operation
from dfs.faults.linearizable import DirectoryModel, first_violation
from tests.faults.cluster import NsCluster, start_cluster
from tests.faults.nemesis import Nemesis
from tests.faults.netns import Network, cleanup_leftovers
from tests.faults.run import read_uncached
from tests.faults.workloads import FileRecords, directory_worker, small_file_writer

log = logging.getLogger(__name__)

# The reader's mount keeps nothing: every read goes to a data server.
UNCACHED_MOUNT_OPTIONS = "block_cache=0,readahead=0"
STREAM_FILE_BYTES = 32 << 20  # 8 blocks of 4 MiB
READ_BYTES = 64 << 10
SETTLE_S = 0.5  # between faults: the workloads run undisturbed for a moment
RESTART_WAIT_S = 120.0  # a restarted server serving again (slow on a loaded machine)
# "2026-11-25T04:01:02.345 INFO dfs.paxos.node: replica 2 leads (ballot ...)"
LEADS_LINE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) INFO dfs\.paxos\.node: replica (\d+) leads")


@dataclass
class LeaderFault:
    kind: str  # "kill" or "pause"
    node: int
    at_wall: float  # time.time() of the signal, to match the servers' logs
    at: float  # time.monotonic() of the signal, to match the workload's history
    probe_s: float  # signal -> the probe's mkdir completed
    workload_s: float | None = None  # signal -> first directory mutation issued after it done
    elected_s: float | None = None  # signal -> the next "leads" line in a replica's log

    @property
    def after_election_s(self) -> float | None:
        return None if self.elected_s is None else self.probe_s - self.elected_s


@dataclass
class ReaderFault:
    server: int
    first_read_s: float  # kill -> first read issued after it that returned the right bytes
    slowest_read_s: float  # the slowest read issued in the READ_WINDOW_S after the kill


@dataclass
class FailoverResult:
    prefix: str = ""  # the run's names (namespaces, links, ledger)
    leader: list[LeaderFault] = field(default_factory=list)
    reader: list[ReaderFault] = field(default_factory=list)
    dir_ops: int = 0
    reads: int = 0
    files_acked: int = 0
    lost: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average at each fault
    # Replicas taking office from the first leader fault on: one per leader fault is
    # the fault's own election; more are elections nobody asked for (a restarted
    # replica that heard no leader in time deposes the one in office).
    elections: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.violations

    def report(self) -> str:
        lines = []
        for kind in ("kill", "pause"):
            faults = [f for f in self.leader if f.kind == kind]
            if not faults:
                continue
            name = "kill -9" if kind == "kill" else "SIGSTOP"
            lines.append(f"leader {name} x{len(faults)}: probe {stats([f.probe_s for f in faults])}"
                         f"; workload {stats([f.workload_s for f in faults])}"
                         f"; new leader in office {stats([f.elected_s for f in faults])}"
                         f"; after that {stats([f.after_election_s for f in faults])}")
        if self.reader:
            lines.append(f"data server kill -9 x{len(self.reader)}: first read "
                         f"{stats([f.first_read_s for f in self.reader])}; slowest read "
                         f"{stats([f.slowest_read_s for f in self.reader])}")
        if self.leader:
            lines.append(f"elections {self.elections} for {len(self.leader)} leader faults")
        load = f"{min(self.load):.1f}-{max(self.load):.1f}" if self.load else "-"
        lines.append(f"directory ops {self.dir_ops}, reads {self.reads}, files acknowledged "
                     f"{self.files_acked}, acknowledged lost {len(self.lost)}, violations "
                     f"{len(self.violations)}; load average {load}")
        return "\n".join(lines)

    def samples(self) -> str:
        """Every fault on a line: what the summary is made of."""
        rows = [f"{f.kind} meta{f.node}: probe {f.probe_s:.3f} s, workload "
                f"{_seconds(f.workload_s)}, elected {_seconds(f.elected_s)}"
                for f in self.leader]
        rows += [f"kill data{f.server}: first read {f.first_read_s:.3f} s, slowest "
                 f"{f.slowest_read_s:.3f} s" for f in self.reader]
        return "\n".join(rows)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least `fraction` of them at or below."""
    rank = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[min(len(ordered), max(1, rank)) - 1]


def stats(samples: list[float | None]) -> str:
    known = sorted(s for s in samples if s is not None)
    if not known:
        return "-"
    return (f"median {statistics.median(known):.2f} s, p99 {percentile(known, 0.99):.2f} s, "
            f"max {known[-1]:.2f} s")


# -- the reader -----------------------------------------------------------------------


@dataclass
class TimedRead:
    invoke: float
    response: float
    ok: bool


class StreamReader:
    """Reads the file with O_DIRECT in READ_BYTES pieces, striding across its blocks so
    every few reads touch every chunk (and so every data server that serves one)."""

    def __init__(self, path: Path, content: bytes) -> None:
        self.path, self.content = path, content
        self.reads: list[TimedRead] = []
        self.wrong: list[str] = []
        block = 4 << 20
        blocks = len(content) // block
        self.offsets = [b * block + piece * READ_BYTES
                        for piece in range(block // READ_BYTES) for b in range(blocks)]

    def run(self, stop: threading.Event) -> None:
        buffer = mmap.mmap(-1, READ_BYTES)  # page-aligned, as O_DIRECT wants
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
        try:
            index = 0
            while not stop.is_set():
                offset = self.offsets[index % len(self.offsets)]
                index += 1
                invoke = time.monotonic()
                try:
                    got = os.preadv(fd, [buffer], offset)
                    data = buffer[:got]
                except OSError as err:
                    log.debug("read at %d: %s", offset, err)
                    self.reads.append(TimedRead(invoke, time.monotonic(), False))
                    time.sleep(0.01)
                    continue
                ok = data == self.content[offset:offset + READ_BYTES]
                if not ok:
                    self.wrong.append(f"read at {offset} returned {len(data)} wrong bytes")
                self.reads.append(TimedRead(invoke, time.monotonic(), ok))
        finally:
            os.close(fd)
            buffer.close()


READ_WINDOW_S = 2.0


def reader_fault_times(reads: list[TimedRead], killed_at: float) -> tuple[float, float] | None:
    after = [r for r in reads if r.invoke >= killed_at]
    first = next((r for r in after if r.ok), None)
    if first is None:
        return None
    window = [r.response - r.invoke for r in after if r.invoke < killed_at + READ_WINDOW_S]
    return first.response - killed_at, max(window)


# Operations that must have reached the leader when they succeed (a stat, or an
# ENOENT, may come from the kernel's caches).
COMMITTED_KINDS = frozenset({"create", "mkdir", "unlink", "rename"})


def first_commit_after(ops: list[Operation], at: float) -> float | None:
    """Seconds from `at` to the completion of the first mutation issued after it that
    succeeded."""
    done = [op.response for op in ops
            if op.invoke >= at and op.answered and op.output == 0 and op.kind in COMMITTED_KINDS]
    return min(done) - at if done else None


def took_office(logs: list[Path]) -> list[tuple[float, int]]:
    """(wall time, replica) of every "leads" line in the replicas' logs (which hold
    local time with milliseconds)."""
    found = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            match = LEADS_LINE.search(line)
            if match is not None:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
                found.append((stamp, int(match.group(2))))
    return sorted(found)


def elected_after(offices: list[tuple[float, int]], at_wall: float, exclude: int) -> float | None:
    """Seconds from `at_wall` to the first replica other than `exclude` taking office."""
    return next((stamp - at_wall for stamp, node in offices
                 if stamp >= at_wall and node != exclude), None)


# -- the run --------------------------------------------------------------------------


class FailoverRun:
    def __init__(self, cluster: NsCluster, seed: int, progress: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.seed = seed
        self.progress = progress
        self.nemesis = Nemesis(cluster, self.rng, (0.0, 0.0), kinds=[])
        self.dir_history = History(time.monotonic)
        self.records = FileRecords()
        self.result = FailoverResult()

    def leader_fault(self, kind: str) -> None:
        self.wait_all_serving()
        time.sleep(SETTLE_S)
        leader = self.nemesis.leader()
        self.result.load.append(os.getloadavg()[0])
        at_wall, at = time.time(), time.monotonic()
        if kind == "kill":
            self.cluster.meta.kill(leader)
        else:
            self.cluster.meta.pause(leader)
        self.nemesis.note(f"{kind} meta{leader} (leader) at {at_wall:.3f}")
        try:
            probe_s = self.nemesis.first_metadata_op_after(at)
        finally:
            if kind == "kill":
                self.cluster.restart_meta(leader)
            else:
                self.cluster.meta.resume(leader)
        self.result.leader.append(LeaderFault(kind, leader, at_wall, at, probe_s))

    def data_fault(self, reader: StreamReader) -> None:
        self.wait_all_serving()
        time.sleep(SETTLE_S)
        server = self.rng.choice(sorted(self.cluster.data.addrs))
        self.result.load.append(os.getloadavg()[0])
        at = time.monotonic()
        self.cluster.data.kill(server)
        self.nemesis.note(f"kill data{server} at {time.time():.3f}")
        deadline = at + 60
        while (times := reader_fault_times(reader.reads, at)) is None or \
                time.monotonic() < at + READ_WINDOW_S:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reader read nothing within 60 s of killing data{server}")
            time.sleep(0.05)
        self.nemesis.note(f"reader: first read after {times[0]:.3f} s")
        self.result.reader.append(ReaderFault(server, *times))
        self.cluster.restart_data(server)

    def wait_all_serving(self) -> None:
        deadline = time.monotonic() + RESTART_WAIT_S
        while not (self.nemesis.all_meta_serving() and self.nemesis.all_data_serving()):
            if time.monotonic() > deadline:
                raise TimeoutError("servers not all serving again after a restart")
            time.sleep(0.1)

    def split_by_logs(self) -> None:
        """The times only the whole run can tell: elections from the replicas' logs, and
        the workload's first mutation after each fault (it may come after a while)."""
        offices = took_office([proc.log_path for proc in self.cluster.meta.replicas.values()])
        ops = self.dir_history.operations()
        for fault in self.result.leader:
            fault.elected_s = elected_after(offices, fault.at_wall, exclude=fault.node)
            fault.workload_s = first_commit_after(ops, fault.at)
        if self.result.leader:
            first = min(fault.at_wall for fault in self.result.leader)
            self.result.elections = sum(stamp >= first for stamp, _ in offices)


def write_stream_file(path: Path, seed: int) -> bytes:
    content = random.Random(seed).randbytes(STREAM_FILE_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    return content


def measure_failover(base: Path, leader_kills: int, leader_pauses: int, data_kills: int,
                     seed: int = 1, progress: Callable[[str], None] = log.info
                     ) -> FailoverResult:
    """A cluster in namespaces, the workloads, the faults in a seeded order, the checks."""
    cleanup_leftovers()
    network = Network()
    cluster: NsCluster | None = None
    try:
        cluster = start_cluster(network, base / network.prefix)
        progress(f"cluster up ({network.subnet})")
        result = _measure(cluster, leader_kills, leader_pauses, data_kills, seed, progress)
        result.prefix = network.prefix
        return result
    finally:
        if cluster is not None:
            cluster.stop()
        network.close()


def _measure(cluster: NsCluster, leader_kills: int, leader_pauses: int, data_kills: int,
             seed: int, progress: Callable[[str], None]) -> FailoverResult:
    run = FailoverRun(cluster, seed, progress)
    content = write_stream_file(cluster.mnt / "stream", seed)
    (cluster.mnt / "failover").mkdir()  # the probes' directory, made before any fault
    reader_mount = cluster.start_mount("rmnt", UNCACHED_MOUNT_OPTIONS)
    reader = StreamReader(reader_mount.path / "stream", content)
    stop = threading.Event()
    workers = [
        threading.Thread(target=directory_worker, args=(cluster.mnt, run.dir_history, 1, seed,
                                                        stop), name="dir", daemon=True),
        threading.Thread(target=small_file_writer, args=(cluster.mnt, run.records, 1, seed,
                                                         stop), name="writer", daemon=True),
        threading.Thread(target=reader.run, args=(stop,), name="reader", daemon=True),
    ]
    faults = ["kill"] * leader_kills + ["pause"] * leader_pauses + ["data"] * data_kills
    run.rng.shuffle(faults)
    try:
        for worker in workers:
            worker.start()
        for number, fault in enumerate(faults, 1):
            if fault == "data":
                run.data_fault(reader)
            else:
                run.leader_fault(fault)
            progress(f"fault {number}/{len(faults)} ({fault}) done")
        run.wait_all_serving()
    finally:
        run.nemesis.close()
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
        hung = [worker.name for worker in workers if worker.is_alive()]
        if hung:
            run.result.violations.append(f"workloads still blocked 120 s after the end: {hung}")
    try:
        _check(run, reader, reader_mount.path)
    finally:
        reader_mount.stop()
    run.split_by_logs()
    return run.result


def _check(run: FailoverRun, reader: StreamReader, mnt: Path) -> None:
    result = run.result
    ops = run.dir_history.operations()
    result.dir_ops = len(ops)
    if first_violation(ops, DirectoryModel()) is not None:
        result.violations.append("the directory history is not linearizable")
    result.reads = len(reader.reads)
    result.violations += reader.wrong
    versions = run.records.versions
    final = {path: read_uncached(mnt / path) for path in versions}
    result.files_acked = sum(v.acked for v in versions.values())
    result.lost = lost_acknowledged(versions, final)
