"""Membership of the metadata group: voters, learners and, during a joint change,
the voters being left. Configurations are replicated state, carried by log entries.

Owns the shape of a configuration and its byte encoding; never quorum arithmetic
(see quorum.py) and never when a change takes effect (see core.py).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

Members = tuple[tuple[int, str], ...]  # sorted (id, host:port)


def _members(mapping: Mapping[int, str]) -> Members:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True, slots=True)
class Config:
    voters: Members
    learners: Members = ()
    old_voters: Members = ()  # non-empty only while a joint change is in flight
    voter_ids: frozenset[int] = field(init=False, compare=False, repr=False)
    old_voter_ids: frozenset[int] = field(init=False, compare=False, repr=False)
    member_ids: frozenset[int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Cached id sets: quorum checks run on every reply, so they must be cheap.
        voter_ids = frozenset(i for i, _ in self.voters)
        old_ids = frozenset(i for i, _ in self.old_voters)
        object.__setattr__(self, "voter_ids", voter_ids)
        object.__setattr__(self, "old_voter_ids", old_ids)
        learners = frozenset(i for i, _ in self.learners)
        object.__setattr__(self, "member_ids", voter_ids | old_ids | learners)

    @classmethod
    def of(
        cls,
        voters: Mapping[int, str],
        learners: Mapping[int, str] | None = None,
        old_voters: Mapping[int, str] | None = None,
    ) -> Config:
        return cls(_members(voters), _members(learners or {}), _members(old_voters or {}))

    @property
    def is_joint(self) -> bool:
        return bool(self.old_voters)

    @property
    def voter_sets(self) -> tuple[frozenset[int], ...]:
        """Every voter set whose majority a decision needs (two while joint)."""
        if self.old_voters:
            return (self.voter_ids, self.old_voter_ids)
        return (self.voter_ids,)

    def addresses(self) -> dict[int, str]:
        return dict(self.old_voters) | dict(self.learners) | dict(self.voters)

    def joint_to(self, new_voters: Mapping[int, str], learners: Mapping[int, str]) -> Config:
        """The joint configuration that moves from these voters to `new_voters`."""
        return Config(_members(new_voters), _members(learners), self.voters)

    def finalized(self) -> Config:
        """The configuration a joint one settles into once it is chosen."""
        return Config(self.voters, self.learners, ())


def _encode_members(members: Members) -> bytes:
    parts = [struct.pack(">I", len(members))]
    for member_id, addr in members:
        raw = addr.encode()
        parts.append(struct.pack(">IH", member_id, len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _decode_members(data: bytes, offset: int) -> tuple[Members, int]:
    (count,) = struct.unpack_from(">I", data, offset)
    offset += 4
    members = []
    for _ in range(count):
        member_id, length = struct.unpack_from(">IH", data, offset)
        offset += 6
        members.append((member_id, data[offset : offset + length].decode()))
        offset += length
    return tuple(members), offset


def encode_config(config: Config) -> bytes:
    return b"".join(_encode_members(m) for m in (config.voters, config.learners, config.old_voters))


def decode_config(data: bytes, offset: int = 0) -> tuple[Config, int]:
    """Decode a configuration at `offset`; returns it and the offset after it."""
    voters, offset = _decode_members(data, offset)
    learners, offset = _decode_members(data, offset)
    old_voters, offset = _decode_members(data, offset)
    return Config(voters, learners, old_voters), offset
