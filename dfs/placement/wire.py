"""Conversions between RingConfig and the other shapes of the same data: the wire's
common.proto Ring and any plain object with the same fields (the metadata state's).

Owns field mapping only; it must never compute placement. Reading the protobuf
message needs no gRPC, so this module stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from dfs.placement.members import Member, MemberState, RingConfig
from dfs.rpc import common_pb2


class MemberFields(Protocol):
    """Anything shaped like a ring member (dfs.meta.types.RingMember, the proto)."""

    @property
    def id(self) -> int: ...
    @property
    def addr(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def domain(self) -> str: ...
    @property
    def state(self) -> int: ...


class RingFields(Protocol):
    """Anything shaped like a ring (dfs.meta.types.Ring, the proto)."""

    @property
    def epoch(self) -> int: ...
    @property
    def members(self) -> Iterable[MemberFields]: ...
    @property
    def replicas(self) -> int: ...
    @property
    def min_replicas(self) -> int: ...
    @property
    def vnodes_per_weight(self) -> int: ...


def config_from_fields(ring: RingFields) -> RingConfig:
    """A RingConfig from any ring-shaped object; RingConfigError when inconsistent."""
    return RingConfig(
        epoch=int(ring.epoch),
        members=tuple(
            Member(
                id=int(member.id),
                addr=str(member.addr),
                weight=int(member.weight),
                domain=str(member.domain),
                state=MemberState(int(member.state)),
            )
            for member in ring.members
        ),
        replicas=int(ring.replicas),
        min_replicas=int(ring.min_replicas),
        vnodes_per_weight=int(ring.vnodes_per_weight),
    )


def config_from_proto(ring: common_pb2.Ring) -> RingConfig:
    """A RingConfig from the wire; ValueError (RingConfigError) when invalid."""
    return config_from_fields(ring)  # the generated message has the same field names


def config_to_proto(config: RingConfig) -> common_pb2.Ring:
    """The wire form of a RingConfig, members in id order."""
    return common_pb2.Ring(
        epoch=config.epoch,
        members=[
            common_pb2.RingMember(
                id=member.id,
                addr=member.addr,
                weight=member.weight,
                domain=member.domain,
                state=int(member.state),  # type: ignore[arg-type]
            )
            for member in sorted(config.members, key=lambda m: m.id)
        ],
        replicas=config.replicas,
        min_replicas=config.min_replicas,
        vnodes_per_weight=config.vnodes_per_weight,
    )
