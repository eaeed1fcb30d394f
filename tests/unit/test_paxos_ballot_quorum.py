"""Ballot ordering and the quorum rules, joint ones included."""

from __future__ import annotations

from dfs.paxos.ballot import ZERO_BALLOT, Ballot, next_ballot
from dfs.paxos.config import Config, decode_config, encode_config
from dfs.paxos.quorum import has_quorum, is_majority, majority_value, quorum_value


def test_higher_round_wins_then_node_breaks_ties() -> None:
    assert Ballot(2, 1) > Ballot(1, 9)
    assert Ballot(1, 2) > Ballot(1, 1)
    assert Ballot(1, 1) == Ballot(1, 1)
    assert max(Ballot(3, 1), Ballot(3, 2), Ballot(2, 5)) == Ballot(3, 2)
    assert Ballot(0, 1) > ZERO_BALLOT


def test_next_ballot_beats_everything_seen() -> None:
    seen = Ballot(7, 3)
    mine = next_ballot(seen, 1)
    assert mine > seen and mine.node == 1 and mine.round == 8


def test_majority() -> None:
    voters = frozenset({1, 2, 3})
    assert not is_majority(voters, {1})
    assert is_majority(voters, {1, 3})
    assert is_majority(voters, {1, 2, 3, 9})  # non-voters do not count, nor hurt
    assert not is_majority(frozenset({1, 2, 3, 4}), {1, 2})


def test_joint_quorum_needs_both_majorities() -> None:
    joint = Config.of({3: "c", 4: "d", 5: "e"}, old_voters={1: "a", 2: "b", 3: "c"})
    assert joint.is_joint
    assert not has_quorum([joint], {1, 2})  # old majority only
    assert not has_quorum([joint], {4, 5})  # new majority only
    assert has_quorum([joint], {2, 3, 4})
    assert has_quorum([joint.finalized()], {4, 5})


def test_quorum_value_is_the_majority_watermark() -> None:
    voters = frozenset({1, 2, 3})
    assert majority_value(voters, {1: 10, 2: 7, 3: 3}) == 7
    assert majority_value(voters, {1: 10}) == float("-inf")
    joint = Config.of({3: "c", 4: "d", 5: "e"}, old_voters={1: "a", 2: "b", 3: "c"})
    # old set {1,2,3} -> 8; new set {3,4,5} -> 5; joint takes the lower.
    assert quorum_value([joint], {1: 9, 2: 8, 3: 5, 4: 2, 5: 6}) == 5


def test_config_codec_round_trips() -> None:
    config = Config.of({1: "h1:1", 2: "h2:2"}, {7: "h7:7"}, {1: "h1:1", 9: "h9:9"})
    decoded, end = decode_config(encode_config(config))
    assert decoded == config and end == len(encode_config(config))
    assert decoded.member_ids == {1, 2, 7, 9}
