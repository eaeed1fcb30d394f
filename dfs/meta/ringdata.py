"""The ring as replicated plain data: members, weights, states, epoch, replication, plus
the capacity figures data servers report.

Every change that alters placement bumps the epoch; capacity reports do not. Placement
itself is computed in dfs/placement, never here.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace

from dfs.meta.types import MemberState, Ring, RingMember
from dfs.placement.members import DEFAULT_REPLICAS, DEFAULT_VNODES_PER_WEIGHT

_STATES = frozenset(MemberState)


@dataclass(frozen=True, slots=True)
class Usage:
    """A data server's last reported figures, in bytes."""

    capacity: int
    used: int


class RingData:
    __slots__ = ("epoch", "members", "min_replicas", "replicas", "usage", "vnodes_per_weight")

    def __init__(self) -> None:
        self.epoch = 0
        self.members: dict[int, RingMember] = {}
        self.replicas = DEFAULT_REPLICAS
        self.min_replicas = DEFAULT_REPLICAS
        self.vnodes_per_weight = DEFAULT_VNODES_PER_WEIGHT
        self.usage: dict[int, Usage] = {}

    def ring(self) -> Ring:
        return Ring(
            epoch=self.epoch,
            members=tuple(self.members[key] for key in sorted(self.members)),
            replicas=self.replicas,
            min_replicas=self.min_replicas,
            vnodes_per_weight=self.vnodes_per_weight,
        )

    def _put(self, member: RingMember) -> None:
        if self.members.get(member.id) != member:
            self.members[member.id] = member
            self.epoch += 1

    def register(self, member_id: int, addr: str, weight: int, domain: str) -> int:
        """Adds a data server (up) or updates its address, weight and domain."""
        if member_id <= 0 or weight <= 0 or not addr:
            return errno.EINVAL
        current = self.members.get(member_id)
        state = MemberState.UP if current is None else current.state
        self._put(RingMember(member_id, addr, weight, domain, state))
        return 0

    def set_state(self, member_id: int, state: int) -> int:
        current = self.members.get(member_id)
        if current is None:
            return errno.ENOENT
        if state not in _STATES:
            return errno.EINVAL
        self._put(replace(current, state=MemberState(state)))
        return 0

    def set_weight(self, member_id: int, weight: int) -> int:
        current = self.members.get(member_id)
        if current is None:
            return errno.ENOENT
        if weight <= 0:
            return errno.EINVAL
        self._put(replace(current, weight=weight))
        return 0

    def remove(self, member_id: int) -> int:
        if self.members.pop(member_id, None) is None:
            return errno.ENOENT
        self.usage.pop(member_id, None)
        self.epoch += 1
        return 0

    def set_replication(self, replicas: int, min_replicas: int, vnodes_per_weight: int) -> int:
        if not 1 <= min_replicas <= replicas or vnodes_per_weight <= 0:
            return errno.EINVAL
        if (replicas, min_replicas, vnodes_per_weight) != (
            self.replicas,
            self.min_replicas,
            self.vnodes_per_weight,
        ):
            self.replicas = replicas
            self.min_replicas = min_replicas
            self.vnodes_per_weight = vnodes_per_weight
            self.epoch += 1
        return 0

    def report_usage(self, member_id: int, capacity: int, used: int) -> int:
        if member_id not in self.members:
            return errno.ENOENT
        self.usage[member_id] = Usage(capacity, used)
        return 0

    def capacity(self) -> tuple[int, int]:
        """(total, free) bytes of the members that hold data, divided by R: what users
        can store with R copies."""
        holding = [
            usage
            for member_id, usage in self.usage.items()
            if self.members[member_id].state != MemberState.OUT
        ]
        total = sum(usage.capacity for usage in holding)
        free = sum(max(usage.capacity - usage.used, 0) for usage in holding)
        return total // self.replicas, free // self.replicas
