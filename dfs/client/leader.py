"""Which metadata server to talk to: the believed leader first, then the others.

A follower answers UNAVAILABLE with the leader's address in the `dfs-leader`
trailing metadata; this module reads that hint and keeps the member list. It
does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from dfs.protocol import LEADER_METADATA_KEY

__all__ = ["LEADER_METADATA_KEY", "LeaderTracker", "leader_hint"]


def leader_hint(error: grpc.RpcError) -> str | None:
    """The leader address a follower named in its refusal, if any."""
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == LEADER_METADATA_KEY and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class LeaderTracker:
    """The member list and the member currently believed to lead."""

    def __init__(self, addrs: Iterable[str]) -> None:
        self.members: list[str] = list(dict.fromkeys(a.strip() for a in addrs if a.strip()))
        if not self.members:
            raise ValueError("no metadata server addresses given")
        self._current = 0

    def current(self) -> str:
        return self.members[self._current]

    def others(self, addr: str) -> list[str]:
        """Every member but `addr`, in list order."""
        return [member for member in self.members if member != addr]

    def follow(self, leader_addr: str) -> None:
        """A member named `leader_addr` as leader (it may be new to us)."""
        if leader_addr not in self.members:
            self.members.append(leader_addr)
        self._current = self.members.index(leader_addr)

    def skip(self, failed_addr: str) -> None:
        """`failed_addr` did not answer or knows no leader: try the next member."""
        if self.current() == failed_addr:
            self._current = (self._current + 1) % len(self.members)
