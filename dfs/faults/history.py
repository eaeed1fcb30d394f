"""Recorded histories: each operation's invocation, completion and result, per client.

A client that gets no answer (a timeout, a dead connection) leaves the operation
PENDING: it may have taken effect at any point after its call, or never. The
recorder is fed by workload threads; the checkers only read what it holds.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

PENDING = math.inf

# What an operation returned: a value read, a CAS outcome, an errno, a listing.
Output = bytes | bool | int | tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True)
class Operation:
    client: int
    invoke: float
    response: float  # PENDING if the client never got an answer
    kind: str  # KV: put | get | cas; directories: create | mkdir | unlink | rename | list
    key: bytes  # the register's key, or the directory operated in
    value: bytes | None = None  # put / cas: the value written; directories: the name
    expected: bytes | None = None  # cas: the value expected (None: absent); rename: source
    output: Output = None

    @property
    def answered(self) -> bool:
        return self.response != PENDING


class History:
    """Operations as they are invoked and completed; safe to use from many threads."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: list[Operation] = []

    def invoke(self, client: int, kind: str, key: bytes, value: bytes | None = None,
               expected: bytes | None = None) -> int:
        """Record a call; the returned handle completes it."""
        with self._lock:
            self._ops.append(Operation(client, self._clock(), PENDING, kind, key, value,
                                       expected))
            return len(self._ops) - 1

    def complete(self, handle: int, output: Output) -> None:
        now = self._clock()
        with self._lock:
            self._ops[handle] = replace(self._ops[handle], response=now, output=output)

    def operations(self) -> list[Operation]:
        with self._lock:
            return list(self._ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, tuple):
        return {"t": [_encode(v) for v in value]}
    if value == PENDING:
        return "pending"
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["b"]) if "b" in value else tuple(_decode(v) for v in value["t"])
    return PENDING if value == "pending" else value


def dump_operations(ops: list[Operation]) -> str:
    """One JSON object per line, so a failing run's history can be replayed."""
    return "".join(
        json.dumps({k: _encode(v) for k, v in asdict(op).items()}) + "\n" for op in ops
    )


def load_operations(text: str) -> list[Operation]:
    return [
        Operation(**{k: _decode(v) for k, v in json.loads(line).items()})
        for line in text.splitlines() if line.strip()
    ]
