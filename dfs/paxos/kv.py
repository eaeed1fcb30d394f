"""A small key-value state machine (Put, Get, CAS) behind the log: the simulator's
workload and, later, the diagnostic KV service.

Owns the KV commands, their results and their encodings; never time or sessions
(the session layer in front of it handles retries).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from dfs.paxos.machine import ApplyContext

_PUT, _GET, _CAS = 1, 2, 3
_LEN = struct.Struct(">I")
_SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes


@dataclass(frozen=True, slots=True)
class Cas:
    """Set key to `new` if its value is `expected` (None: the key is absent)."""

    key: bytes
    expected: bytes | None
    new: bytes


KvCommand = Put | Get | Cas


@dataclass(frozen=True, slots=True)
class KvResult:
    """ok: Put always; Get when found; Cas when swapped. value: the value read (Get),
    or the value found when a Cas did not swap."""

    ok: bool
    value: bytes | None


def _field(value: bytes | None) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    return _LEN.pack(len(value)) + value


def _read_field(data: bytes, offset: int) -> tuple[bytes | None, int]:
    (length,) = _LEN.unpack_from(data, offset)
    offset += 4
    if length == 0xFFFFFFFF:
        return None, offset
    if offset + length > len(data):
        raise ValueError("kv field runs past the end")
    return bytes(data[offset : offset + length]), offset + length


def encode_command(command: KvCommand) -> bytes:
    if isinstance(command, Put):
        return bytes([_PUT]) + _field(command.key) + _field(command.value)
    if isinstance(command, Get):
        return bytes([_GET]) + _field(command.key)
    return bytes([_CAS]) + _field(command.key) + _field(command.expected) + _field(command.new)


def decode_command(data: bytes) -> KvCommand:
    """Raises ValueError on a malformed command."""
    try:
        kind = data[0]
        key, offset = _read_field(data, 1)
        if key is None:
            raise ValueError("kv key missing")
        if kind == _GET:
            return Get(key)
        first, offset = _read_field(data, offset)
        if kind == _PUT and first is not None:
            return Put(key, first)
        if kind == _CAS:
            new, offset = _read_field(data, offset)
            if new is not None:
                return Cas(key, first, new)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed kv command: {exc}") from exc
    raise ValueError("malformed kv command")


def encode_result(result: KvResult) -> bytes:
    return bytes([result.ok]) + _field(result.value)


def decode_result(data: bytes) -> KvResult:
    value, _ = _read_field(data, 1)
    return KvResult(bool(data[0]), value)


def encode_snapshot(data: dict[bytes, bytes]) -> bytes:
    """A snapshot's bytes from a (copied) state, in one go."""
    encoder = SnapshotEncoder(data)
    while not encoder.step(len(data) + 1):
        pass
    return bytes(encoder.finish())


class SnapshotEncoder:
    """Encodes a copied state a slice at a time, so a replica can apply commands
    between slices: no step sorts or encodes more than `max_keys` keys (one sort of
    a million keys would hold the interpreter for half a second). Keys are sorted
    in runs, then the runs merged, giving the same bytes as one sort: replicas that
    applied the same commands write identical snapshots."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self._data = data
        self._keys = list(data)
        self._runs: list[list[bytes]] = []
        self._sorted_upto = 0
        self._merged: Iterator[bytes] | None = None
        # Joined a step at a time: one join of millions of small parts at the end
        # would hold the interpreter for a third of a second.
        self._encoded = bytearray([_SNAPSHOT_VERSION]) + _LEN.pack(len(data))
        self._done = False

    def step(self, max_keys: int) -> bool:
        """Sort or encode up to max_keys more keys; True once finish() is ready."""
        if self._sorted_upto < len(self._keys):
            end = self._sorted_upto + max_keys
            self._runs.append(sorted(self._keys[self._sorted_upto : end]))
            self._sorted_upto = end
            return False
        if self._merged is None:
            self._merged = heapq.merge(*self._runs)
        parts = []
        data = self._data
        for key in islice(self._merged, max_keys):
            parts.append(_field(key))
            parts.append(_field(data[key]))
        self._encoded += b"".join(parts)
        self._done = len(parts) < 2 * max_keys
        return self._done

    def finish(self) -> bytearray:
        """The snapshot's bytes (not copied: the caller joins them into a larger
        snapshot); reads nothing live, so it may run on a worker thread."""
        assert self._done, "finish() before the last step"
        return self._encoded


class KvMachine:
    """The StateMachine: a dict from key to value."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        return encode_result(self.execute(decode_command(command)))

    def query(self, command: bytes) -> bytes:
        """A read-only command, served outside the log (lease or read-index reads)."""
        decoded = decode_command(command)
        if not isinstance(decoded, Get):
            raise ValueError("only Get may be served outside the log")
        return encode_result(self.execute(decoded))

    def execute(self, command: KvCommand) -> KvResult:
        current = self._data.get(command.key)
        if isinstance(command, Get):
            return KvResult(current is not None, current)
        if isinstance(command, Put):
            self._data[command.key] = command.value
            return KvResult(True, None)
        if current != command.expected:
            return KvResult(False, current)
        self._data[command.key] = command.new
        return KvResult(True, None)

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        """KV holds nothing per session."""

    def snapshot(self) -> bytes:
        return encode_snapshot(self._data)

    def snapshot_copy(self) -> dict[bytes, bytes]:
        """The state now, as a copy that later commands do not change (keys and
        values are immutable bytes, so a shallow copy is enough and fast)."""
        return dict(self._data)

    def restore(self, data: bytes) -> None:
        if not data or data[0] != _SNAPSHOT_VERSION:
            raise ValueError("unknown kv snapshot version")
        (count,) = _LEN.unpack_from(data, 1)
        offset = 5
        restored: dict[bytes, bytes] = {}
        for _ in range(count):
            key, offset = _read_field(data, offset)
            value, offset = _read_field(data, offset)
            if key is None or value is None:
                raise ValueError("kv snapshot holds an absent key or value")
            restored[key] = value
        self._data = restored
