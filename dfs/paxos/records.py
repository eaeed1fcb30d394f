"""Durable records of one acceptor, their byte codec, and recovery from a replay.

Owns what must survive a crash (promise, accepted entries, chosen point, snapshot
point) and a deterministic encoding. Never framing, checksums or files: the WAL
wraps each encoded record in its own length and checksum.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from dfs.paxos.ballot import ZERO_BALLOT, Ballot
from dfs.paxos.config import Config, decode_config, encode_config
from dfs.paxos.messages import LogEntry


@dataclass(frozen=True, slots=True)
class PromiseRecord:
    """The acceptor promised `ballot`: it must refuse anything lower, forever."""

    ballot: Ballot


@dataclass(frozen=True, slots=True)
class AcceptRecord:
    """The acceptor accepted these entries, each under its own ballot."""

    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class ChosenRecord:
    """Every slot <= chosen_upto is chosen (a hint that speeds up restart)."""

    chosen_upto: int


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A snapshot covers every slot <= slot; the log before it is dropped."""

    slot: int
    config: Config


Record = PromiseRecord | AcceptRecord | ChosenRecord | SnapshotRecord

_PROMISE, _ACCEPT, _CHOSEN, _SNAPSHOT = 1, 2, 3, 4
_BALLOT = struct.Struct(">QI")
_ENTRY_HEAD = struct.Struct(">QQIIB")  # slot, round, node, command count, has config
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _encode_entry(entry: LogEntry, parts: list[bytes]) -> None:
    parts.append(
        _ENTRY_HEAD.pack(
            entry.slot,
            entry.ballot.round,
            entry.ballot.node,
            len(entry.commands),
            entry.config is not None,
        )
    )
    for command in entry.commands:
        parts.append(_U32.pack(len(command)))
        parts.append(command)
    if entry.config is not None:
        parts.append(encode_config(entry.config))


def _decode_entry(data: bytes, offset: int) -> tuple[LogEntry, int]:
    slot, round_, node, count, has_config = _ENTRY_HEAD.unpack_from(data, offset)
    offset += _ENTRY_HEAD.size
    commands = []
    for _ in range(count):
        (length,) = _U32.unpack_from(data, offset)
        offset += 4
        commands.append(bytes(data[offset : offset + length]))
        offset += length
    config = None
    if has_config:
        config, offset = decode_config(data, offset)
    return LogEntry(slot, Ballot(round_, node), tuple(commands), config), offset


def encode_record(record: Record) -> bytes:
    if isinstance(record, PromiseRecord):
        return bytes([_PROMISE]) + _BALLOT.pack(record.ballot.round, record.ballot.node)
    if isinstance(record, AcceptRecord):
        parts = [bytes([_ACCEPT]), _U32.pack(len(record.entries))]
        for entry in record.entries:
            _encode_entry(entry, parts)
        return b"".join(parts)
    if isinstance(record, ChosenRecord):
        return bytes([_CHOSEN]) + _U64.pack(record.chosen_upto)
    return bytes([_SNAPSHOT]) + _U64.pack(record.slot) + encode_config(record.config)


def decode_record(data: bytes) -> Record:
    """Decode one record; raises ValueError on anything that is not a whole record."""
    try:
        record, end = _decode(data)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable paxos record: {exc}") from exc
    if end != len(data):
        raise ValueError(f"paxos record has {len(data) - end} trailing bytes")
    return record


def _decode(data: bytes) -> tuple[Record, int]:
    kind = data[0]
    if kind == _PROMISE:
        round_, node = _BALLOT.unpack_from(data, 1)
        return PromiseRecord(Ballot(round_, node)), 1 + _BALLOT.size
    if kind == _ACCEPT:
        (count,) = _U32.unpack_from(data, 1)
        offset = 5
        entries = []
        for _ in range(count):
            entry, offset = _decode_entry(data, offset)
            entries.append(entry)
        return AcceptRecord(tuple(entries)), offset
    if kind == _CHOSEN:
        return ChosenRecord(_U64.unpack_from(data, 1)[0]), 9
    if kind == _SNAPSHOT:
        (slot,) = _U64.unpack_from(data, 1)
        config, offset = decode_config(data, 9)
        return SnapshotRecord(slot, config), offset
    raise ValueError(f"unknown paxos record kind {kind}")


@dataclass(slots=True)
class RecoveredState:
    """What an acceptor remembers after a restart (see `recover`)."""

    promised: Ballot = ZERO_BALLOT
    log: dict[int, LogEntry] = field(default_factory=dict)
    chosen_upto: int = 0
    snapshot_slot: int = 0  # log_start - 1
    snapshot_config: Config | None = None


def recover(records: Iterable[Record]) -> RecoveredState:
    """Rebuild an acceptor's state from the records of a WAL replay, in order.

    A later accept of a slot replaces an earlier one (ballots only grow); an accept
    implies a promise of its ballot; a snapshot drops the log it covers.
    """
    state = RecoveredState()
    for record in records:
        if isinstance(record, PromiseRecord):
            state.promised = max(state.promised, record.ballot)
        elif isinstance(record, AcceptRecord):
            for entry in record.entries:
                if entry.slot > state.snapshot_slot:
                    state.log[entry.slot] = entry
                state.promised = max(state.promised, entry.ballot)
        elif isinstance(record, ChosenRecord):
            state.chosen_upto = max(state.chosen_upto, record.chosen_upto)
        elif record.slot > state.snapshot_slot:
            state.snapshot_slot = record.slot
            state.snapshot_config = record.config
            state.chosen_upto = max(state.chosen_upto, record.slot)
            state.log = {s: e for s, e in state.log.items() if s > record.slot}
    # The chosen hint is only usable where the log holds the values.
    upto = state.snapshot_slot
    while upto < state.chosen_upto and upto + 1 in state.log:
        upto += 1
    state.chosen_upto = upto
    return state
