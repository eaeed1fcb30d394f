"""Single protocol steps of the sans-I/O core, table by table, in the style of etcd
raft's paper-section tests: one input, then exactly what comes out."""

from __future__ import annotations

from dfs.paxos.ballot import Ballot
from dfs.paxos.config import Config
from dfs.paxos.core import Options, PaxosCore, Ready, Role
from dfs.paxos.messages import (
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    LogEntry,
    Message,
    Outgoing,
    Prepare,
    Promise,
)
from dfs.paxos.records import (
    AcceptRecord,
    ChosenRecord,
    PromiseRecord,
    RecoveredState,
    recover,
)

OPTIONS = Options(
    heartbeat_interval=0.01, lease_duration=0.04, lease_drift_margin=0.004, window=4, max_batch=3
)
TIMEOUT = 0.1  # fixed election timeout: the tests feed it, as the driver would
CONFIG = Config.of({1: "n1", 2: "n2", 3: "n3"})


def make(node: int, now: float = 0.0, recovered: RecoveredState | None = None) -> PaxosCore:
    return PaxosCore(node, CONFIG, recovered, OPTIONS, lambda: TIMEOUT, now)


def sync(core: PaxosCore, now: float) -> Ready:
    """Take a Ready, pretend its records were fsynced at once, take what that released."""
    first = core.ready()
    core.durable(first.records_upto, now)
    second = core.ready()
    return Ready(
        first.records + second.records,
        second.records_upto,
        first.messages + second.messages,
        first.committed + second.committed,
        first.reads + second.reads,
        first.snapshots_needed + second.snapshots_needed,
        first.snapshots_wanted + second.snapshots_wanted,
    )


def sent(ready: Ready, kind: type) -> list[Outgoing]:
    return [o for o in ready.messages if isinstance(o.message, kind)]


class Net:
    """Three cores, a lossless instant network, instant fsyncs."""

    def __init__(self) -> None:
        self.cores = {i: make(i) for i in (1, 2, 3)}
        self.now = 0.0
        self.committed: dict[int, list[LogEntry]] = {i: [] for i in self.cores}
        self.reads: dict[int, list] = {i: [] for i in self.cores}  # type: ignore[type-arg]
        self.cut: set[int] = set()
        self.snapshots_needed: list[tuple[int, int]] = []  # (leader, peer)

    def pump(self, extra: tuple[Outgoing, ...] = ()) -> None:
        queue: list[Outgoing] = list(extra)
        for node_id, core in self.cores.items():
            queue += self._take(node_id, core)
        while queue:
            out = queue.pop(0)
            if out.to in self.cut or out.message.sender in self.cut or out.to not in self.cores:
                continue
            core = self.cores[out.to]
            core.step(out.message, self.now)
            queue += self._take(out.to, core)

    def _take(self, node_id: int, core: PaxosCore) -> list[Outgoing]:
        ready = sync(core, self.now)
        self.committed[node_id] += ready.committed
        self.reads[node_id] += ready.reads
        self.snapshots_needed += [(node_id, n.peer) for n in ready.snapshots_needed]
        return list(ready.messages)

    def advance(self, seconds: float, step: float = 0.005) -> None:
        end = self.now + seconds
        while self.now < end - 1e-12:
            self.now += step
            for core in self.cores.values():
                core.tick(self.now)
            self.pump()

    def elect(self, node_id: int) -> PaxosCore:
        self.now = max(self.now, OPTIONS.lease_duration)  # past rule 3's start guard
        core = self.cores[node_id]
        core.tick(self.now + TIMEOUT + 0.001)
        self.now += TIMEOUT + 0.001
        self.pump()
        assert core.is_leader
        return core


# -- acceptor: phase 1


def test_promise_is_sent_only_after_it_is_durable() -> None:
    core = make(2)
    core.step(Prepare(1, Ballot(1, 1), 1), 0.05)
    ready = core.ready()
    assert ready.records == (PromiseRecord(Ballot(1, 1)),)
    assert ready.messages == ()  # not before the fsync
    core.durable(ready.records_upto, 0.05)
    after = core.ready()
    assert [o.to for o in sent(after, Promise)] == [1]
    assert after.messages[0].message.promised  # type: ignore[union-attr]


def test_lower_ballot_prepare_is_refused_with_the_promised_ballot() -> None:
    core = make(2)
    core.step(Prepare(3, Ballot(5, 3), 1), 0.05)
    sync(core, 0.05)
    core.step(Prepare(1, Ballot(4, 1), 1), 0.06)
    (refusal,) = sent(core.ready(), Promise)
    assert not refusal.message.promised  # type: ignore[union-attr]
    assert refusal.message.promised_ballot == Ballot(5, 3)  # type: ignore[union-attr]


def test_rule3_restarted_acceptor_promises_nothing_for_one_lease() -> None:
    core = make(2, now=10.0)
    core.step(Prepare(1, Ballot(1, 1), 1), 10.0 + OPTIONS.lease_duration / 2)
    assert not core.ready()  # silence, and no promise record
    core.step(Prepare(1, Ballot(1, 1), 1), 10.0 + OPTIONS.lease_duration + 0.001)
    assert sent(sync(core, 10.05), Promise)


def test_rule1_lease_grant_blocks_higher_promises_until_it_expires() -> None:
    core = make(2)
    core.step(Heartbeat(1, Ballot(1, 1), 0, seq=1), 0.10)
    assert sent(sync(core, 0.10), HeartbeatAck)
    core.step(Prepare(3, Ballot(2, 3), 1), 0.12)  # grant runs until 0.14
    assert not core.ready()
    core.step(Prepare(3, Ballot(2, 3), 1), 0.15)
    assert sent(sync(core, 0.15), Promise)


def test_promise_reports_accepted_entries_from_the_asked_slot() -> None:
    recovered = recover(
        [AcceptRecord(tuple(LogEntry(s, Ballot(1, 1), (b"%d" % s,)) for s in (1, 2, 3)))]
    )
    core = make(2, recovered=recovered)
    core.step(Prepare(3, Ballot(2, 3), 2), 0.05)
    (promise,) = sent(sync(core, 0.05), Promise)
    assert [e.slot for e in promise.message.accepted] == [2, 3]  # type: ignore[union-attr]


# -- acceptor: phase 2


def test_accept_below_promise_is_refused() -> None:
    core = make(2)
    core.step(Prepare(3, Ballot(5, 3), 1), 0.05)
    sync(core, 0.05)
    core.step(Accept(1, Ballot(4, 1), (LogEntry(1, Ballot(4, 1), (b"x",)),), 0), 0.06)
    ready = core.ready()
    assert ready.records == ()
    (nack,) = sent(ready, Accepted)
    assert not nack.message.ok and nack.message.promised_ballot == Ballot(5, 3)  # type: ignore[union-attr]


def test_accept_is_recorded_then_acknowledged_and_commit_point_learned() -> None:
    core = make(2)
    ballot = Ballot(1, 1)
    entries = (LogEntry(1, ballot, (b"a",)), LogEntry(2, ballot, (b"b",)))
    core.step(Accept(1, ballot, entries, chosen_upto=0), 0.05)
    first = core.ready()
    assert first.records == (AcceptRecord(entries),)
    assert first.messages == ()
    core.durable(first.records_upto, 0.05)
    (ack,) = sent(core.ready(), Accepted)
    assert ack.message.accepted_upto == 2  # type: ignore[union-attr]
    core.step(Heartbeat(1, ballot, chosen_upto=1, seq=1), 0.06)
    assert [e.slot for e in sync(core, 0.06).committed] == [1]
    assert core.leader_id == 1


def test_accepted_value_takes_the_accept_ballot() -> None:
    """A leader re-sending a chosen entry under its ballot: the acceptor records it
    under the message's ballot, so it counts for that leader's commit point."""
    core = make(2)
    core.step(Accept(3, Ballot(4, 3), (LogEntry(1, Ballot(1, 1), (b"a",)),), 1), 0.05)
    ready = sync(core, 0.05)
    assert ready.records[0] == AcceptRecord((LogEntry(1, Ballot(4, 3), (b"a",)),))
    assert [e.commands for e in ready.committed] == [(b"a",)]


# -- elections and the leader


def test_timeout_starts_an_election_with_a_higher_ballot() -> None:
    core = make(1)
    core.step(Heartbeat(2, Ballot(3, 2), 0, 1), 0.05)
    sync(core, 0.05)
    core.tick(0.05 + TIMEOUT + 0.01)
    first = core.ready()
    # The ballot is recorded durably before any Prepare leaves, so a restart can
    # never campaign twice with it.
    assert first.records == (PromiseRecord(Ballot(4, 1)),)
    assert sent(first, Prepare) == []
    core.durable(first.records_upto, 0.16)
    prepares = sent(core.ready(), Prepare)
    assert {o.to for o in prepares} == {2, 3}
    assert all(o.message.ballot == Ballot(4, 1) for o in prepares)  # type: ignore[union-attr]
    assert core.role is Role.CANDIDATE


def test_new_leader_reproposes_highest_accepted_and_fills_holes() -> None:
    low = LogEntry(1, Ballot(0, 2), (b"low",))
    high = LogEntry(1, Ballot(0, 3), (b"high",))
    far = LogEntry(3, Ballot(0, 2), (b"far",))
    candidate = make(1, recovered=recover([AcceptRecord((low, far))]))
    candidate.tick(0.2)
    sync(candidate, 0.2)  # its own promise, with low and far, is durable
    ballot = Ballot(1, 1)
    candidate.step(Promise(3, True, ballot, (high,), 0, 1), 0.21)
    assert candidate.is_leader
    ready = candidate.ready()
    (record,) = [r for r in ready.records if isinstance(r, AcceptRecord)]
    values = {e.slot: e.commands for e in record.entries}
    assert values == {1: (b"high",), 2: (), 3: (b"far",), 4: ()}  # 2: hole, 4: own no-op
    assert all(e.ballot == ballot for e in record.entries)


def test_leader_commits_after_a_majority_and_followers_learn() -> None:
    net = Net()
    leader = net.elect(1)
    assert leader.propose([b"a", b"b", b"c", b"d"], net.now)  # max_batch=3: two slots
    net.pump()
    net.advance(0.02)
    commands = [c for e in net.committed[1] for c in e.commands]
    assert commands == [b"a", b"b", b"c", b"d"]
    for follower in (2, 3):
        assert [e.commands for e in net.committed[follower]] == [
            e.commands for e in net.committed[1]
        ]


def test_pipeline_window_bounds_unchosen_slots() -> None:
    net = Net()
    leader = net.elect(1)
    net.cut = {2, 3}  # nothing gets chosen
    leader.propose([b"%d" % i for i in range(30)], net.now)
    net.pump()
    status = leader.status(net.now)
    in_flight = max(e.slot for e in leader._log.values()) - status.chosen_upto
    assert in_flight == OPTIONS.window


def test_leader_steps_down_on_a_higher_ballot() -> None:
    net = Net()
    leader = net.elect(1)
    leader.step(Accepted(2, Ballot(1, 1), 0, False, Ballot(9, 3), 1), net.now)
    assert leader.role is Role.FOLLOWER
    assert not leader.propose([b"x"], net.now)


def test_leader_keeps_quiet_followers_from_campaigning() -> None:
    net = Net()
    net.elect(1)
    net.advance(5 * TIMEOUT)
    assert net.cores[1].is_leader
    assert not net.cores[2].is_leader and not net.cores[3].is_leader
    assert net.cores[2].leader_id == 1


# -- reads


def test_read_on_a_follower_is_refused() -> None:
    core = make(2)
    core.read(7, 0.1)
    (read,) = core.ready().reads
    assert not read.ok and read.request_id == 7


def test_rule4_and_lease_read_then_read_index_without_lease() -> None:
    net = Net()
    leader = net.elect(1)
    net.advance(0.02)  # own no-op chosen, heartbeats granted
    leader.read(1, net.now)
    (lease_read,) = leader.ready().reads
    assert lease_read.ok and lease_read.read_index == leader.chosen_upto
    assert leader.status(net.now).lease_left > 0
    # Cut both followers: the lease runs out, a read needs a read-index round.
    net.cut = {2, 3}
    net.advance(OPTIONS.lease_duration)
    assert leader.status(net.now).lease_left == 0
    leader.read(2, net.now)
    net.pump()
    assert [r.request_id for r in net.reads[1] if r.request_id == 2] == []
    net.cut = set()
    net.advance(0.01)
    (confirmed,) = [r for r in net.reads[1] if r.request_id == 2]
    assert confirmed.ok


def test_rule4_new_leader_reads_wait_for_its_own_entry() -> None:
    candidate = make(1)
    candidate.tick(0.2)
    sync(candidate, 0.2)
    ballot = Ballot(1, 1)
    candidate.step(Promise(2, True, ballot, (), 0, 1), 0.21)
    assert candidate.is_leader
    candidate.read(5, 0.21)
    assert candidate.ready().reads == ()  # its own no-op is not chosen yet


def test_rule5_transfer_ends_lease_reads_first() -> None:
    net = Net()
    leader = net.elect(1)
    net.advance(0.02)
    assert leader.status(net.now).lease_left > 0
    assert leader.transfer_leadership(2, net.now)
    assert leader.status(net.now).lease_left == 0
    leader.read(9, net.now)
    ready = leader.ready()
    (refused,) = ready.reads
    assert not refused.ok
    net.pump(ready.messages)
    net.advance(0.05)
    assert net.cores[2].is_leader
    assert not leader.is_leader


# -- membership


def test_joint_change_then_final_config() -> None:
    net = Net()
    net.cores[4] = PaxosCore(
        4, Config.of(dict(CONFIG.voters), {4: "n4"}), None, OPTIONS, lambda: TIMEOUT, 0.0
    )
    net.committed[4], net.reads[4] = [], []
    leader = net.elect(1)
    assert leader.propose_config({1: "n1", 2: "n2", 4: "n4"}, {3: "n3"}, net.now)
    assert not leader.propose_config({1: "n1"}, {}, net.now)  # one change at a time
    net.pump()
    net.advance(0.03)
    configs = [e.config for e in net.committed[1] if e.config is not None]
    assert configs[0].is_joint and configs[0].old_voter_ids == {1, 2, 3}
    assert not configs[1].is_joint and configs[1].voter_ids == {1, 2, 4}
    assert net.cores[4].config.voter_ids == {1, 2, 4}


def test_joint_config_needs_both_majorities_to_commit() -> None:
    net = Net()
    leader = net.elect(1)
    joint_target = {1: "n1", 4: "n4", 5: "n5"}  # new majority needs 4 or 5: absent
    assert leader.propose_config(joint_target, {}, net.now)
    net.pump()
    net.advance(0.02)
    assert leader.config.is_joint  # the joint entry is chosen by the old majority
    leader.propose([b"x"], net.now)
    net.advance(0.05)
    assert all(b"x" not in e.commands for e in net.committed[1])


# -- snapshots hooks


def test_compact_and_install_snapshot() -> None:
    net = Net()
    leader = net.elect(1)
    leader.propose([b"a"], net.now)
    net.advance(0.02)
    upto = leader.status(net.now).committed_upto
    leader.compact(upto)
    assert leader.ready().records[-1].slot == upto  # type: ignore[union-attr]
    follower = make(5)
    follower.install_snapshot(upto, CONFIG, 1.0)
    status = follower.status(1.0)
    assert status.chosen_upto == upto and status.committed_upto == upto
    assert follower.ready().committed == ()


def test_status_reports_leadership() -> None:
    net = Net()
    leader = net.elect(1)
    status = leader.status(net.now)
    assert status.role is Role.LEADER and status.leader_id == 1
    assert status.ballot == Ballot(1, 1) and status.config == CONFIG


def test_outgoing_message_types_are_complete() -> None:
    """Every message kind the core emits is one the driver maps to the proto."""
    kinds: set[type] = set()
    net = Net()
    original = net._take

    def spy(node_id: int, core: PaxosCore) -> list[Outgoing]:
        out = original(node_id, core)
        kinds.update(type(o.message) for o in out)
        return out

    net._take = spy  # type: ignore[method-assign]
    net.elect(1)
    net.advance(0.03)
    expected: set[type[Message]] = {Prepare, Promise, Accept, Accepted, Heartbeat, HeartbeatAck}
    assert expected <= kinds


def test_candidate_behind_a_snapshot_does_not_lead() -> None:
    candidate = make(1)
    candidate.tick(0.2)
    sync(candidate, 0.2)
    promise = Promise(2, True, Ballot(1, 1), (), chosen_upto=40, log_start=31)
    candidate.step(promise, 0.21)
    ready = candidate.ready()
    assert not candidate.is_leader
    assert [(w.source, w.log_start) for w in ready.snapshots_wanted] == [(2, 31)]
    candidate.install_snapshot(40, CONFIG, 0.3)
    assert candidate.chosen_upto == 40


def test_leader_asks_for_a_snapshot_for_a_peer_behind_its_log() -> None:
    net = Net()
    leader = net.elect(1)
    net.cut = {3}
    leader.propose([b"a"], net.now)
    net.advance(0.02)
    leader.compact(leader.status(net.now).committed_upto)
    net.cut = set()
    net.advance(0.03)
    assert (1, 3) in net.snapshots_needed
    # The entries it lacks are gone from the leader's log: only a snapshot helps.
    assert net.cores[3].chosen_upto < leader.chosen_upto


def test_chosen_point_hint_costs_no_fsync_and_holds_back_no_answer() -> None:
    core = make(2)
    ballot = Ballot(1, 1)
    core.step(Accept(1, ballot, (LogEntry(1, ballot, (b"a",)),), chosen_upto=0), 0.05)
    first = core.ready()
    assert first.sync_needed
    core.durable(first.records_upto, 0.05)
    core.ready()
    core.step(Heartbeat(1, ballot, chosen_upto=1, seq=1), 0.06)
    hint = core.ready()
    assert hint.records == (ChosenRecord(1),)
    assert not hint.sync_needed  # the driver may leave it for the next fsync
    assert sent(hint, HeartbeatAck)  # and the heartbeat's answer does not wait for it
    # The hint never became durable on its own; the next accept's answer waits only
    # for the fsync that covers its own record (and the hint with it).
    core.step(Accept(1, ballot, (LogEntry(2, ballot, (b"b",)),), chosen_upto=1), 0.07)
    second = core.ready()
    assert second.sync_needed and not sent(second, Accepted)
    core.durable(second.records_upto, 0.07)
    (ack,) = sent(core.ready(), Accepted)
    assert ack.message.accepted_upto == 2  # type: ignore[union-attr]
