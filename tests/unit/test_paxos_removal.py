"""A voter removed from the group hears nothing once its removal is chosen. It must
neither campaign nor, if it does anyway, depose the leader or win: the group would
follow its heartbeats while none of their replies reached it (a stall seen on real
replicas)."""

from __future__ import annotations

from dfs.paxos.ballot import Ballot
from dfs.paxos.core import Role
from dfs.paxos.messages import Prepare, Promise
from tests.unit.test_paxos_core import TIMEOUT, Net, sent, sync


def remove_voter_3(net: Net) -> None:
    leader = net.cores[1]
    assert leader.propose_config({1: "n1", 2: "n2"}, {}, net.now)
    net.pump()
    net.advance(0.05)
    assert leader.config.voter_ids == {1, 2} and not leader.config.is_joint


def test_a_removed_voter_does_not_campaign() -> None:
    net = Net()
    leader = net.elect(1)
    remove_voter_3(net)
    removed = net.cores[3]
    # It saw the joint configuration chosen, so it knows it is leaving, not voting.
    assert removed.config.is_joint and 3 not in removed.config.voter_ids
    ballot_before = removed.status(net.now).ballot
    net.advance(10 * TIMEOUT)
    assert removed.role is Role.FOLLOWER and removed.status(net.now).ballot == ballot_before
    assert leader.is_leader


def test_a_removed_voter_that_campaigns_anyway_is_refused() -> None:
    net = Net()
    leader = net.elect(1)
    remove_voter_3(net)
    prepare = Prepare(3, Ballot(50, 3), 1)
    answers = []
    for node_id in (1, 2):
        net.cores[node_id].step(prepare, net.now)
        answers += sent(sync(net.cores[node_id], net.now), Promise)
    assert [a.to for a in answers] == [3, 3]
    assert not any(a.message.promised for a in answers)  # type: ignore[attr-defined]
    assert leader.is_leader and leader.status(net.now).ballot < prepare.ballot


def test_a_leader_with_a_live_lease_promises_no_higher_ballot() -> None:
    net = Net()
    leader = net.elect(1)
    net.advance(3 * 0.01)  # heartbeats acknowledged: the lease holds
    assert leader.status(net.now).lease_left > 0
    leader.step(Prepare(2, Ballot(50, 2), 1), net.now)
    assert not sent(sync(leader, net.now), Promise)  # silence, as a granting follower
    assert leader.is_leader
