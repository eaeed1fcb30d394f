"""The simulated clients (sessions, retries after timeouts, redirects) and the
nemesis (crashes, restarts, partitions, leader isolation, transfers, membership).

Owns what the outside world does to the group; never a check (see invariants.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dfs.faults.history import PENDING
from dfs.paxos import kv, sessions
from tests.sim.cluster import SimFailure

if TYPE_CHECKING:
    from tests.sim.simulation import Simulation

_REDIRECT_PAUSE = 0.003  # a client waits this long before following a redirect


@dataclass(eq=False)
class SimOp:
    client: SimClient
    op_id: int
    kind: str  # "open" | "put" | "cas" | "get"
    key: bytes = b""
    value: bytes | None = None
    expected: bytes | None = None
    invoke: float = 0.0
    response: float = PENDING
    output: Any = None
    session: int = 0
    seq: int = 0
    attempt: int = 0
    target: int = 1
    done: bool = False


class SimClient:
    def __init__(self, sim: Simulation, client_id: int) -> None:
        self.sim = sim
        self.id = client_id
        self.ops_left = sim.params.ops_per_client
        self.ops: list[SimOp] = []
        self.inflight: list[SimOp] = []
        self.session = 0
        self.opening = False
        self.next_seq = 1
        self.answered: set[int] = set()
        self.acked = 0
        self.target = sim.rng.choice(sim.node_ids)
        self.last_seen: dict[bytes, bytes | None] = {}
        self._op_ids = 0

    @property
    def finished(self) -> bool:
        return self.ops_left == 0 and not self.inflight and not self.opening

    def start(self) -> None:
        self.open_session()

    def _new_op(self, kind: str) -> SimOp:
        self._op_ids += 1
        op = SimOp(self, self._op_ids, kind, invoke=self.sim.sched.time, target=self.target)
        return op

    def open_session(self) -> None:
        self.opening = True
        self.session = 0
        self.send(self._new_op("open"))

    def launch(self) -> None:
        rng = self.sim.rng
        while (
            self.session and self.ops_left and len(self.inflight) < self.sim.params.client_inflight
        ):
            self.ops_left -= 1
            kind = rng.choice(("put", "put", "cas", "get", "get"))
            op = self._new_op(kind)
            op.key = b"k%d" % rng.randrange(self.sim.params.keys)
            if kind in ("put", "cas"):
                op.value = b"c%d.%d" % (self.id, op.op_id)
                op.session = self.session
                op.seq = self.next_seq
                self.next_seq += 1
            if kind == "cas":
                op.expected = self.last_seen.get(op.key)
            self.ops.append(op)
            self.inflight.append(op)
            self.send(op)

    def request(self, op: SimOp) -> tuple[Any, ...]:
        if op.kind == "open":
            return ("open",)
        if op.kind == "get":
            return ("read",)
        assert op.value is not None
        command: kv.KvCommand = (
            kv.Put(op.key, op.value) if op.kind == "put" else kv.Cas(op.key, op.expected, op.value)
        )
        return ("write", op.session, op.seq, self.acked, kv.encode_command(command))

    def send(self, op: SimOp) -> None:
        op.attempt += 1
        self.sim.to_node(op.target, op, self.request(op))
        self.sim.sched.after(self.sim.params.client_timeout, self.on_timeout, op, op.attempt)

    def _resend(self, op: SimOp, attempt: int) -> None:
        if not op.done and attempt == op.attempt:
            self.send(op)

    def _next_target(self, current: int) -> int:
        ids = self.sim.node_ids
        return ids[(ids.index(current) + 1) % len(ids)]

    def on_timeout(self, op: SimOp, attempt: int) -> None:
        if op.done or attempt != op.attempt:
            return
        op.target = self._next_target(op.target)
        self.send(op)

    def on_reply(self, op: SimOp, reply: tuple[Any, ...]) -> None:
        if op.done:
            return
        kind = reply[0]
        if kind == "redirect":
            hint = reply[1]
            op.target = (
                hint if hint is not None and hint != op.target else self._next_target(op.target)
            )
            op.attempt += 1  # the pending timeout no longer applies
            self.sim.sched.after(_REDIRECT_PAUSE, self._resend, op, op.attempt)
            return
        self.target = op.target
        if kind == "read":
            result = kv.decode_result(reply[1])
            op.output = result.value
            self.last_seen[op.key] = result.value
            self._complete(op)
            return
        answer = sessions.decode_result(reply[1])
        if op.kind == "open":
            if answer.status != sessions.OK:
                raise SimFailure(f"open session failed with {answer.status}")
            op.done = True
            self.opening = False
            self.session = int.from_bytes(answer.payload, "big")
            self.next_seq, self.answered, self.acked = 1, set(), 0
            self.launch()
            return
        if answer.status == sessions.OK:
            result = kv.decode_result(answer.payload)
            op.output = result.ok if op.kind == "cas" else None
            if op.kind == "put" or result.ok:
                self.last_seen[op.key] = op.value
            self.answered.add(op.seq)
            while self.acked + 1 in self.answered:
                self.acked += 1
            self._complete(op)
        elif answer.status == sessions.errno.ESTALE:
            self._session_lost(op.session)
        else:
            raise SimFailure(f"client {self.id} op {op.op_id}: unexpected status {answer.status}")

    def _complete(self, op: SimOp) -> None:
        op.done = True
        op.response = self.sim.sched.time
        self.inflight.remove(op)
        # Think time spreads each client's work across the faulty period.
        self.sim.sched.after(self.sim.rng.uniform(0, self.sim.params.think_time), self.launch)

    def _session_lost(self, session: int) -> None:
        """ESTALE: every write of that session is indeterminate; open a new session."""
        for op in list(self.inflight):
            if op.kind != "get" and op.session == session:
                op.done = True  # response stays PENDING: it may or may not have applied
                self.inflight.remove(op)
        if self.session == session and not self.opening:
            self.open_session()


def schedule_nemesis(sim: Simulation) -> None:
    """Pre-draw the times of fault actions; each action looks at the group when it runs."""
    rng = sim.rng
    when = rng.uniform(0.05, 0.1)
    while when < sim.params.fault_time:
        sim.sched.at(when, _act, sim)
        when += rng.uniform(0.02, 0.08)


def _flap(sim: Simulation, node_id: int) -> None:
    sim.crash(node_id)
    sim.sched.after(0.001, sim.restart, node_id)


def _act(sim: Simulation) -> None:
    rng = sim.rng
    actions = ["crash", "crash", "partition", "isolate", "cut", "cut", "transfer", "nothing"]
    if sim.params.spare:
        actions += ["membership", "membership"]
    action = rng.choice(actions)
    leader = sim.leader()
    if action == "crash":
        victims = [n for n in sim.nodes.values() if n.alive]
        node = leader if leader is not None and rng.random() < 0.4 else rng.choice(victims)
        sim.crash(node.id)
        down_for = rng.uniform(0.001, 0.01) if rng.random() < 0.5 else rng.uniform(0.01, 0.08)
        sim.sched.after(down_for, sim.restart, node.id)
    elif action == "partition":
        ids = list(sim.node_ids)
        rng.shuffle(ids)
        side = set(ids[: rng.randrange(1, len(ids))])
        sim.partition(side, rng.uniform(0.02, 0.15))
    elif action == "cut" and leader is not None:
        # One broken link between the leader and a follower: the follower campaigns
        # while the leader still holds its lease through the others.
        followers = [i for i in sim.node_ids if i != leader.id]
        other = rng.choice(followers)
        sim.partition_pairs([(leader.id, other), (other, leader.id)], rng.uniform(0.05, 0.2))
        if rng.random() < 0.5:
            # ...while another follower flaps (crash, restart at once, again): each
            # restart forgets its lease grants, which rule 3 must make up for.
            flapper = rng.choice([i for i in followers if i != other])
            start = rng.uniform(0.03, 0.08)
            for k in range(rng.randrange(4, 12)):
                sim.sched.after(start + k * rng.uniform(0.005, 0.012), _flap, sim, flapper)
    elif action == "isolate" and leader is not None:
        sim.partition({leader.id}, rng.uniform(0.03, 0.15))
    elif action == "transfer" and leader is not None and leader.core is not None:
        others = sorted(leader.core.config.voter_ids - {leader.id})
        if others:
            target = rng.choice(others)
            sim.note(f"transfer leadership {leader.id} -> {target}")
            leader.core.transfer_leadership(target, leader.now())
            leader.drain()
    elif action == "membership" and leader is not None and leader.core is not None:
        config = leader.core.config
        learners = sorted(dict(config.learners))
        if config.is_joint or not learners:
            return
        out = rng.choice(sorted(config.voter_ids))
        new = rng.choice(learners)
        voters = (config.voter_ids - {out}) | {new}
        addresses = config.addresses()
        new_learners = (set(learners) - {new}) | {out}
        if leader.core.propose_config(
            {i: addresses[i] for i in voters},
            {i: addresses[i] for i in new_learners},
            leader.now(),
        ):
            sim.note(f"membership: voters {sorted(voters)} (out {out}, in {new})")
        leader.drain()
