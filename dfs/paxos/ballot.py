"""Ballots: the total order of leaderships, (round, node id), higher round wins.

Owns the ordering rule and how a candidate picks its next ballot; never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A leadership attempt. Field order is the comparison order: round, then node."""

    round: int
    node: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


ZERO_BALLOT = Ballot(0, 0)


def next_ballot(highest_seen: Ballot, node: int) -> Ballot:
    """The smallest ballot owned by `node` that beats every ballot seen so far."""
    return Ballot(highest_seen.round + 1, node)
