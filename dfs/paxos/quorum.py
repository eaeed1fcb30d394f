"""Quorum rules: majorities, and joint quorums that need a majority of every voter set.

Owns the arithmetic only; which configurations apply at a moment is core.py's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from dfs.paxos.config import Config


def is_majority(voters: Set[int], acks: Set[int]) -> bool:
    return 2 * len(voters & acks) > len(voters)


def has_quorum(configs: Iterable[Config], acks: Set[int]) -> bool:
    """True when `acks` hold a majority of every voter set of every configuration."""
    return all(is_majority(vs, acks) for c in configs for vs in c.voter_sets)


def majority_value(voters: Set[int], values: Mapping[int, float]) -> float:
    """The largest v such that a majority of `voters` report a value >= v.

    Voters without a report count as -inf, so a missing majority gives -inf.
    """
    reported = sorted((values.get(v, float("-inf")) for v in voters), reverse=True)
    return reported[len(voters) // 2]


def quorum_value(configs: Iterable[Config], values: Mapping[int, float]) -> float:
    """majority_value across every voter set of every configuration (joint rule)."""
    return min(majority_value(vs, values) for c in configs for vs in c.voter_sets)
