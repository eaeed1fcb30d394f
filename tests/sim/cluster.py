"""A deterministic simulation of one Paxos group in one process.

Owns the seeded scheduler, the fake network (delay, reorder, duplicate, drop,
partitions), fake per-replica clocks with bounded drift, fake WALs that lose
every record not yet reported durable (and may tear the last one), and a driver
per replica that does what dfs/paxos/node.py does. The clients, the nemesis and
the checks live in workload.py and invariants.py.
"""

from __future__ import annotations

import heapq
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dfs.paxos.config import Config
from dfs.paxos.core import Options, PaxosCore
from dfs.paxos.kv import Cas, Get, KvMachine, Put, decode_command
from dfs.paxos.kv import encode_command as encode_kv
from dfs.paxos.machine import ApplyContext
from dfs.paxos.messages import Message
from dfs.paxos.planted import PlantedBug
from dfs.paxos.records import Record, SnapshotRecord, decode_record, encode_record, recover
from dfs.paxos.sessions import OpenSession, SessionRequest, SessionTable, Tick
from dfs.paxos.sessions import encode_command as encode_session

_FRAME = struct.Struct(">I")
# Wall-clock epoch of the fake clocks, in ns: leaders stamp it into commands.
_WALL_EPOCH_NS = 1_700_000_000 * 10**9


class SimFailure(AssertionError):
    """An invariant broke; the message says which and where."""


@dataclass
class SimParams:
    replicas: int = 3
    spare: bool = False  # one extra replica, a learner, for membership changes
    fault_time: float = 0.5  # seconds of nemesis activity
    settle_time: float = 1.5  # then everything heals; clients must finish by the end
    tick: float = 0.005
    net_delay: tuple[float, float] = (0.0002, 0.002)
    drop: float = 0.02
    duplicate: float = 0.02
    fsync: tuple[float, float] = (0.0003, 0.003)
    drift: float = 0.01  # clock rates within 1 +- drift
    election: tuple[float, float] = (0.06, 0.12)
    options: Options = field(
        default_factory=lambda: Options(
            heartbeat_interval=0.01,
            lease_duration=0.04,
            lease_drift_margin=0.004,
            window=8,
            max_batch=16,
        )
    )
    session_timeout: float = 0.3
    state_tick_interval: float = 0.05
    clients: int = 3
    ops_per_client: int = 10
    client_inflight: int = 2
    client_timeout: float = 0.04
    think_time: float = 0.06
    keys: int = 2
    snapshot_every: int = 8  # slots between snapshots (0: never compact)
    snapshot_resend: float = 0.02  # at most one snapshot per peer per this many seconds
    planted: frozenset[PlantedBug] = frozenset()


class CountingKv(KvMachine):
    """The KV machine, refusing to execute any write command twice (exactly-once)."""

    def __init__(self, applied_everywhere: set[bytes]) -> None:
        super().__init__()
        self._applied_here: set[bytes] = set()
        self._applied_everywhere = applied_everywhere

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        decoded = decode_command(command)
        if isinstance(decoded, Put | Cas):
            value = decoded.value if isinstance(decoded, Put) else decoded.new
            if value in self._applied_here:
                raise SimFailure(f"write {value!r} applied twice (slot {ctx.slot})")
            self._applied_here.add(value)
            self._applied_everywhere.add(value)
        return super().apply(command, ctx)


class Scheduler:
    """A seeded discrete-event loop: events at equal times run in schedule order."""

    def __init__(self) -> None:
        self.time = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.time + delay, fn, *args)

    def run_until(self, end: float, stop: Callable[[], bool]) -> None:
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, fn, args = heapq.heappop(queue)
            self.time = when
            fn(*args)
            if stop():
                return
        self.time = max(self.time, end)


def wal_bytes(records: list[Record], torn: Record | None, cut: float) -> bytes:
    """The fake WAL: length-framed records, maybe a torn piece of one more."""
    parts = []
    for record in records:
        raw = encode_record(record)
        parts.append(_FRAME.pack(len(raw)) + raw)
    if torn is not None:
        raw = encode_record(torn)
        framed = _FRAME.pack(len(raw)) + raw
        parts.append(framed[: max(1, int(len(framed) * cut))])
    return b"".join(parts)


def replay(wal: bytes) -> list[Record]:
    """Decode whole frames; a torn tail is cut off, never applied."""
    records = []
    offset = 0
    while offset + _FRAME.size <= len(wal):
        (length,) = _FRAME.unpack_from(wal, offset)
        if offset + _FRAME.size + length > len(wal):
            break
        start = offset + _FRAME.size
        records.append(decode_record(wal[start : start + length]))
        offset = start + length
    return records


class SimNode:
    """One replica and its driver: WAL with group commit, network, apply, reads."""

    def __init__(self, sim: Any, node_id: int, rng: random.Random) -> None:
        self.sim = sim
        self.id = node_id
        drift = sim.params.drift
        self.rate = rng.uniform(1 - drift, 1 + drift)
        self.offset = rng.uniform(0, 10)
        self.alive = False
        self.incarnation = 0
        self.durable: list[Record] = []
        self.pending: list[Record] = []
        self.written_upto = 0
        self.fsync_busy = False
        self.sync_wanted = False  # pending holds a record that must reach disk
        self.snapshot_gap = sim.params.snapshot_every  # slots until the next snapshot
        self.core: PaxosCore | None = None
        self.machine: SessionTable | None = None
        self.kv: CountingKv | None = None
        self.applied = 0
        self.waiting: dict[bytes, Any] = {}  # proposed command -> client op awaiting it
        self.reads: dict[int, Any] = {}  # read request id -> client op
        self.ready_reads: list[tuple[int, Any]] = []  # (read_index, op) safe once applied
        self.next_state_tick = 0.0
        self.was_leader = False
        self.snapshot: tuple[int, Config, bytes] | None = None  # durable snapshot file
        self.snapshot_sent_at: dict[int, float] = {}

    def now(self) -> float:
        return self.offset + self.rate * self.sim.sched.time

    def wall_ns(self) -> int:
        return _WALL_EPOCH_NS + int(self.now() * 1e9)

    # -- lifecycle

    def start(self) -> None:
        sim = self.sim
        self.alive = True
        self.incarnation += 1
        rng = sim.rng
        low, high = sim.params.election
        records = list(self.durable)
        self.kv = CountingKv(sim.applied_values)
        self.machine = SessionTable(
            self.kv, int(sim.params.session_timeout * 1e9), sim.params.planted
        )
        self.applied = 0
        if self.snapshot is not None:
            # The snapshot file is durable before its record is written; replay as if
            # the record were there (it may have been lost with the unsynced tail).
            slot, config, data = self.snapshot
            self.machine.restore(data)
            self.applied = slot
            records.append(SnapshotRecord(slot, config))
        self.core = PaxosCore(
            self.id,
            sim.bootstrap,
            recover(records),
            sim.options,
            lambda: rng.uniform(low, high),
            self.now(),
            applied_upto=self.applied,
        )
        self.written_upto = 0
        self.was_leader = False
        self.sim.sched.after(rng.uniform(0, sim.params.tick), self.on_tick, self.incarnation)
        self.drain()

    # -- snapshots: taken every few slots, sent to replicas the log no longer serves

    def maybe_compact(self) -> None:
        every = self.sim.params.snapshot_every
        taken = self.snapshot[0] if self.snapshot is not None else 0
        if not every or self.applied - taken < self.snapshot_gap:
            return
        core, machine = self.core, self.machine
        assert core is not None and machine is not None
        self.snapshot = (self.applied, core.config_at(self.applied), machine.snapshot())
        core.compact(self.applied)
        # Each replica snapshots at its own, random points (1 to 2x the interval
        # apart), so installs and catch-ups meet logs cut anywhere.
        self.snapshot_gap = self.sim.rng.randint(1, 2 * every)

    def send_snapshot(self, to: int) -> None:
        sim = self.sim
        last = self.snapshot_sent_at.get(to, -1.0)
        if (
            not self.alive
            or self.snapshot is None
            or sim.sched.time - last < sim.params.snapshot_resend
        ):
            return
        self.snapshot_sent_at[to] = sim.sched.time
        sim.note(f"n{self.id} -> n{to} SNAPSHOT at slot {self.snapshot[0]}")
        sim.send(self.id, to, self.snapshot)  # type: ignore[arg-type]

    def on_snapshot(self, snapshot: tuple[int, Config, bytes]) -> None:
        core, machine = self.core, self.machine
        if not self.alive or core is None or machine is None:
            return
        slot, config, data = snapshot
        if slot <= core.chosen_upto:
            return
        machine.restore(data)
        self.applied = slot
        self.snapshot = snapshot
        core.install_snapshot(slot, config, self.now())
        self.drain()

    def crash(self) -> None:
        """Lose every record not yet durable; maybe leave a torn piece of the next."""
        rng = self.sim.rng
        self.alive = False
        torn = self.pending[0] if self.pending and rng.random() < 0.5 else None
        wal = wal_bytes(self.durable, torn, rng.random())
        self.durable = replay(wal)
        self.pending = []
        self.fsync_busy = False
        self.sync_wanted = False
        self.core = None
        self.machine = None
        self.waiting.clear()
        self.reads.clear()
        self.ready_reads.clear()

    # -- inputs

    def on_tick(self, incarnation: int) -> None:
        if not self.alive or incarnation != self.incarnation:
            return
        core = self.core
        assert core is not None
        now = self.now()
        core.tick(now)
        if core.is_leader and now >= self.next_state_tick:
            self.next_state_tick = now + self.sim.params.state_tick_interval
            ballot = core.status(now).ballot
            tick = Tick(self.wall_ns(), ballot.round, ballot.node)
            core.propose([encode_session(tick)], now)
        self.drain()
        self.sim.sched.after(self.sim.params.tick, self.on_tick, incarnation)

    def on_message(self, message: Message) -> None:
        if not self.alive:
            return
        if isinstance(message, tuple):
            self.on_snapshot(message)
            return
        assert self.core is not None
        self.core.step(message, self.now())
        self.drain()

    def on_fsync_done(self, incarnation: int, count: int, upto: int) -> None:
        if not self.alive or incarnation != self.incarnation:
            return
        self.durable.extend(self.pending[:count])
        del self.pending[:count]
        self.fsync_busy = False
        assert self.core is not None
        self.core.durable(upto, self.now())
        self.drain()

    # -- the driver loop: what node.py does with each Ready

    def drain(self) -> None:
        core = self.core
        assert core is not None
        ready = core.ready()
        sim = self.sim
        if core.is_leader != self.was_leader:
            self.was_leader = core.is_leader
            if self.was_leader:
                sim.note(f"n{self.id} LEADS with ballot {core.status(self.now()).ballot}")
                sim.invariants.on_new_leader(sim, self.id)
        if ready.records:
            self.pending.extend(ready.records)
            self.written_upto = ready.records_upto
            self.sync_wanted |= ready.sync_needed
        if self.pending and self.sync_wanted and not self.fsync_busy:
            # Chosen-point hints alone wait for the next record that needs a sync.
            self.sync_wanted = False
            # Group commit: one fsync covers everything written so far.
            self.fsync_busy = True
            sim.sched.after(
                sim.rng.uniform(*sim.params.fsync),
                self.on_fsync_done,
                self.incarnation,
                len(self.pending),
                self.written_upto,
            )
        for outgoing in ready.messages:
            sim.send(self.id, outgoing.to, outgoing.message)
        for entry in ready.committed:
            self.apply(entry.slot, entry.commands, entry.config)
        if ready.committed:
            self.maybe_compact()
        for needed in ready.snapshots_needed:
            self.send_snapshot(needed.peer)
        for wanted in ready.snapshots_wanted:
            sim.nodes[wanted.source].send_snapshot(self.id)
        for read in ready.reads:
            op = self.reads.pop(read.request_id, None)
            if op is None:
                continue
            if read.ok:
                self.ready_reads.append((read.read_index, op))
            else:
                sim.reply(op, ("redirect", core.leader_id))
        if self.ready_reads:
            self.serve_reads()

    def apply(self, slot: int, commands: tuple[bytes, ...], config: Config | None) -> None:
        sim = self.sim
        if slot != self.applied + 1:
            raise SimFailure(f"node {self.id} applied slot {slot} after {self.applied}")
        sim.invariants.on_chosen(self.id, slot, commands, config)
        machine = self.machine
        assert machine is not None
        for index, command in enumerate(commands):
            result = machine.apply(command, ApplyContext(slot, index, 0, 0))
            sim.invariants.on_result(self.id, slot, index, result)
            op = self.waiting.pop(command, None)
            if op is not None:
                sim.reply(op, ("result", result))
        self.applied = slot

    def serve_reads(self) -> None:
        still = []
        assert self.kv is not None
        for read_index, op in self.ready_reads:
            if read_index <= self.applied:
                value = self.kv.query(encode_kv(Get(op.key)))
                self.sim.reply(op, ("read", value))
            else:
                still.append((read_index, op))
        self.ready_reads = still

    def on_client(self, op: Any, request: tuple[Any, ...]) -> None:
        """A client request: ("open",), ("write", session, seq, acked, payload), ("read",)."""
        if not self.alive:
            return
        core = self.core
        assert core is not None
        now = self.now()
        if not core.is_leader:
            self.sim.reply(op, ("redirect", core.leader_id))
            return
        if request[0] == "read":
            request_id = self.sim.next_request_id()
            self.reads[request_id] = op
            core.read(request_id, now)
            self.drain()
            return
        # The leader stamps its wall clock into every command it proposes.
        if request[0] == "open":
            command = encode_session(OpenSession(self.wall_ns()))
        else:
            _, session, seq, acked, payload = request
            command = encode_session(SessionRequest(session, seq, acked, self.wall_ns(), payload))
        if core.propose([command], now):
            self.waiting[command] = op
        else:
            self.sim.reply(op, ("redirect", None))
        self.drain()
