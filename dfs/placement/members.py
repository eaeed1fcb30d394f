"""The plain data a ring is built from: members, their states, the ring's settings.

Owns validation of that data and nothing else; it is what the replicated metadata
state stores. It must never do placement arithmetic or any I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_REPLICAS = 3
# Chosen by measurement (scripts/ring_figures.py --sweep, 10 servers, R = 3, 20 seeds
# of 100,000 chunks): 128 gives worst max/mean load 1.106 and weight error 0.173;
# 256 gives 1.095 and 0.148 for 1.5 ms to build 10 servers (0.5 s for 1000); 512
# gives 1.070 and 0.124 but doubles build time and memory again.
DEFAULT_VNODES_PER_WEIGHT = 256
# Bounds the build cost of a ring (hashing and sorting every vnode): a weight is a
# small relative capacity (1 = a typical disk), not a byte count.
MAX_TOTAL_VNODES = 1_000_000
MAX_MEMBER_ID = 2**32 - 1


class MemberState(enum.IntEnum):
    """How a data server takes part in placement (see dfs.placement.ring); the numbers
    are common.proto's MemberState."""

    UP = 1
    DOWN = 2
    OUT = 3
    DRAINING = 4


class RingConfigError(ValueError):
    """The ring data is inconsistent; nothing was built from it."""


@dataclass(frozen=True, slots=True)
class Member:
    """One data server in the ring."""

    id: int  # unique in the cluster; also the key of its vnode positions
    addr: str  # host:port of its data service
    weight: int = 1  # relative capacity; vnodes = weight * vnodes_per_weight
    domain: str = ""  # failure-domain label; "" = a domain of its own
    state: MemberState = MemberState.UP

    @property
    def domain_key(self) -> str:
        """The failure domain this member counts in; unlabelled members stand alone."""
        # "\0" cannot start a label the operator typed, so no label collides with it.
        return self.domain if self.domain else f"\0{self.id}"


@dataclass(frozen=True, slots=True)
class RingConfig:
    """Everything a Ring is built from; equal configs give identical rings."""

    epoch: int
    members: tuple[Member, ...]
    replicas: int = DEFAULT_REPLICAS
    vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT
    min_replicas: int = 0  # 0 = same as replicas

    def __post_init__(self) -> None:
        validate(self)

    @property
    def effective_min_replicas(self) -> int:
        """Fewest copies a write may be acknowledged with."""
        return self.min_replicas if self.min_replicas else self.replicas

    def member(self, member_id: int) -> Member:
        """The member with this id; KeyError when absent."""
        for candidate in self.members:
            if candidate.id == member_id:
                return candidate
        raise KeyError(member_id)


def validate(config: RingConfig) -> None:
    """Raise RingConfigError unless the config can be built into a ring."""
    if config.epoch < 0:
        raise RingConfigError(f"epoch must be >= 0, got {config.epoch}")
    if config.replicas < 1:
        raise RingConfigError(f"replicas must be >= 1, got {config.replicas}")
    if not 0 <= config.min_replicas <= config.replicas:
        raise RingConfigError(
            f"min_replicas must be in [0, {config.replicas}], got {config.min_replicas}"
        )
    if config.vnodes_per_weight < 1:
        raise RingConfigError(f"vnodes_per_weight must be >= 1, got {config.vnodes_per_weight}")
    seen_ids: set[int] = set()
    total_vnodes = 0
    for member in config.members:
        if not 0 <= member.id <= MAX_MEMBER_ID:
            raise RingConfigError(f"member id {member.id} out of range")
        if member.id in seen_ids:
            raise RingConfigError(f"member id {member.id} appears twice")
        seen_ids.add(member.id)
        if member.weight < 0:
            raise RingConfigError(f"member {member.id}: weight must be >= 0")
        total_vnodes += member.weight * config.vnodes_per_weight
    if total_vnodes > MAX_TOTAL_VNODES:
        raise RingConfigError(
            f"{total_vnodes} virtual nodes exceed {MAX_TOTAL_VNODES}; lower the weights"
        )
