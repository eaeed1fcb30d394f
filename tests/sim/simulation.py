"""One seeded run: build the group, run clients and nemesis, heal, check.

`run_seed(seed)` is the whole API: the same seed (and params) replays the same run,
event for event; `trace=True` records a readable event log.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from dfs.faults.history import Operation
from dfs.paxos.config import Config
from dfs.paxos.messages import Message
from dfs.paxos.planted import PlantedBug
from tests.sim.cluster import Scheduler, SimFailure, SimNode, SimParams
from tests.sim.invariants import Invariants
from tests.sim.workload import SimClient, SimOp, schedule_nemesis


@dataclass
class SimResult:
    seed: int
    replicas: int
    failure: str | None
    sim_time: float
    events: int
    chosen_slots: int
    trace: list[str]

    @property
    def ok(self) -> bool:
        return self.failure is None


def params_for_seed(seed: int, planted: frozenset[PlantedBug] = frozenset()) -> SimParams:
    """Even seeds run 3 replicas, odd seeds 5; one seed in three adds a spare learner
    and membership changes."""
    return SimParams(
        replicas=3 if seed % 2 == 0 else 5,
        spare=seed % 3 == 0,
        planted=planted,
    )


class Simulation:
    def __init__(self, seed: int, params: SimParams, trace: bool = False) -> None:
        self.seed = seed
        self.params = params
        self.rng = random.Random(seed)
        self.sched = Scheduler()
        self.tracing = trace
        self.trace: list[str] = []
        self.options = replace(params.options, planted=params.planted)
        voters = {i: f"n{i}" for i in range(1, params.replicas + 1)}
        learners = {params.replicas + 1: f"n{params.replicas + 1}"} if params.spare else {}
        self.bootstrap = Config.of(voters, learners)
        self.node_ids = sorted(voters) + sorted(learners)
        self.nodes = {i: SimNode(self, i, self.rng) for i in self.node_ids}
        self.blocked: dict[tuple[int, int], int] = {}
        self.applied_values: set[bytes] = set()
        self.invariants = Invariants()
        self.clients = [SimClient(self, c) for c in range(1, params.clients + 1)]
        self._request_ids = 0
        self.events = 0

    # -- services for nodes and clients

    def note(self, text: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.sched.time * 1000:9.3f}ms  {text}")

    def next_request_id(self) -> int:
        self._request_ids += 1
        return self._request_ids

    def send(self, src: int, dst: int, message: Message) -> None:
        rng = self.rng
        if (src, dst) in self.blocked or rng.random() < self.params.drop:
            if self.tracing:
                self.note(f"n{src} -> n{dst} LOST {message}")
            return
        low, high = self.params.net_delay
        self.sched.after(rng.uniform(low, high), self._deliver, src, dst, message)
        if rng.random() < self.params.duplicate:
            self.sched.after(rng.uniform(low, high), self._deliver, src, dst, message)

    def _deliver(self, src: int, dst: int, message: Message) -> None:
        self.events += 1
        if self.tracing:
            self.note(f"n{src} -> n{dst} {message}")
        self.nodes[dst].on_message(message)

    def to_node(self, target: int, op: SimOp, request: tuple[Any, ...]) -> None:
        if self.rng.random() < self.params.drop:
            return
        low, high = self.params.net_delay
        self.sched.after(self.rng.uniform(low, high), self._client_request, target, op, request)

    def _client_request(self, target: int, op: SimOp, request: tuple[Any, ...]) -> None:
        self.events += 1
        if self.tracing:
            self.note(f"client {op.client.id} op {op.op_id} {op.kind} -> n{target} {request[0]}")
        self.nodes[target].on_client(op, request)

    def reply(self, op: SimOp, reply: tuple[Any, ...]) -> None:
        if self.rng.random() < self.params.drop:
            return
        low, high = self.params.net_delay
        self.sched.after(self.rng.uniform(low, high), self._client_reply, op, reply)

    def _client_reply(self, op: SimOp, reply: tuple[Any, ...]) -> None:
        self.events += 1
        if self.tracing:
            self.note(f"client {op.client.id} op {op.op_id} {op.kind} <- {reply}")
        op.client.on_reply(op, reply)

    # -- the nemesis's levers

    def leader(self) -> SimNode | None:
        """The live leader with the highest ballot, if any."""
        best = None
        best_ballot = None
        for node in self.nodes.values():
            core = node.core
            if node.alive and core is not None and core.is_leader:
                ballot = core.status(0).ballot
                if best_ballot is None or ballot > best_ballot:
                    best, best_ballot = node, ballot
        return best

    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            self.note(f"CRASH n{node_id} (losing {len(node.pending)} unsynced records)")
            node.crash()

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            self.note(f"RESTART n{node_id} with {len(node.durable)} records")
            node.start()

    def partition(self, side: set[int], duration: float) -> None:
        pairs = [(a, b) for a in side for b in self.node_ids if b not in side]
        pairs += [(b, a) for a, b in pairs]
        self.note(f"PARTITION {sorted(side)} from the rest for {duration * 1000:.0f}ms")
        self.partition_pairs(pairs, duration)

    def partition_pairs(self, pairs: list[tuple[int, int]], duration: float) -> None:
        """Drop every message on these directed links for `duration`."""
        self.note(f"CUT {pairs} for {duration * 1000:.0f}ms")
        for pair in pairs:
            self.blocked[pair] = self.blocked.get(pair, 0) + 1
        self.sched.after(duration, self._heal, pairs)

    def _heal(self, pairs: list[tuple[int, int]]) -> None:
        for pair in pairs:
            left = self.blocked.get(pair, 0) - 1
            if left > 0:
                self.blocked[pair] = left
            else:
                self.blocked.pop(pair, None)

    def heal_all(self) -> None:
        self.note("HEAL: all partitions gone, all replicas up")
        self.blocked.clear()
        for node_id in self.node_ids:
            self.restart(node_id)

    # -- the run

    def history_ops(self) -> list[Operation]:
        ops = []
        for client in self.clients:
            for op in client.ops:
                ops.append(
                    Operation(
                        client.id,
                        op.invoke,
                        op.response,
                        op.kind,
                        op.key,
                        op.value,
                        op.expected,
                        op.output,
                    )
                )
        return ops

    def run(self) -> None:
        for node in self.nodes.values():
            node.start()
        for client in self.clients:
            self.sched.after(self.rng.uniform(0, 0.05), client.start)
        schedule_nemesis(self)
        params = self.params
        never = lambda: False  # noqa: E731
        self.sched.run_until(params.fault_time, never)
        self.heal_all()
        # Heals, restarts and stale timers are still queued; they are harmless now.
        self.sched.after(0, self.heal_all)
        done = lambda: all(c.finished for c in self.clients)  # noqa: E731
        self.sched.run_until(params.fault_time + params.settle_time, done)
        self.invariants.final(self)


def run_seed(
    seed: int,
    planted: frozenset[PlantedBug] = frozenset(),
    trace: bool = False,
    params: SimParams | None = None,
) -> SimResult:
    sim = Simulation(seed, params or params_for_seed(seed, planted), trace)
    failure = None
    try:
        sim.run()
    except SimFailure as exc:
        failure = str(exc)
        sim.note(f"FAILURE: {failure}")
    return SimResult(
        seed,
        sim.params.replicas,
        failure,
        sim.sched.time,
        sim.events,
        len(sim.invariants.chosen),
        sim.trace,
    )
