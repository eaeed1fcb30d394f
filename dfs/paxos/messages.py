"""Replica-to-replica protocol messages, as frozen values the core takes and returns.

They mirror proto/dfs/v1/paxos.proto field by field (the driver maps one to the
other); `sender` is the envelope's `from`. Never any behaviour here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfs.paxos.ballot import Ballot
from dfs.paxos.config import Config


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One slot: a batch of commands chosen together (empty: a no-op), or a config change."""

    slot: int
    ballot: Ballot
    commands: tuple[bytes, ...] = ()
    config: Config | None = None


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a: promise `ballot` for every slot from `from_slot`."""

    sender: int
    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b. When `promised`, promised_ballot is the ballot asked for."""

    sender: int
    promised: bool
    promised_ballot: Ballot
    accepted: tuple[LogEntry, ...]
    chosen_upto: int
    log_start: int


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a: accept these entries (slot order); every slot <= chosen_upto is chosen."""

    sender: int
    ballot: Ballot
    entries: tuple[LogEntry, ...]
    chosen_upto: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b. accepted_upto: the contiguous prefix held durably under `ballot`."""

    sender: int
    ballot: Ballot
    accepted_upto: int
    ok: bool
    promised_ballot: Ballot
    next_needed: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness, the commit point, and a lease grant request (echoed `seq`)."""

    sender: int
    ballot: Ballot
    chosen_upto: int
    seq: int


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """ok: a lease grant to `ballot`. Refusals carry the higher promised ballot instead."""

    sender: int
    ballot: Ballot
    seq: int
    ok: bool
    accepted_upto: int


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the old leader has ended its lease reads; every follower
    drops its grant to `ballot`, and `target` starts an election at once."""

    sender: int
    ballot: Ballot
    target: int


Message = Prepare | Promise | Accept | Accepted | Heartbeat | HeartbeatAck | TimeoutNow


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for replica `to`."""

    to: int
    message: Message
