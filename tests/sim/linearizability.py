"""A linearizability checker for histories of a key-value register (Put, Get, CAS).

Wing & Gong's search with P-compositionality (each key checked on its own) and a
cache of visited (linearized set, register value) pairs, as porcupine does.
Operations never answered may take effect at any point after their call, or not at all.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

PENDING = math.inf


@dataclass(frozen=True, slots=True)
class Operation:
    client: int
    invoke: float
    response: float  # PENDING if the client never got an answer
    kind: str  # "put" | "get" | "cas"
    key: bytes
    value: bytes | None = None  # put: value; cas: new value
    expected: bytes | None = None  # cas: expected value (None: absent)
    output: bytes | bool | None = None  # get: value read; cas: swapped; put: None


def _step(op: Operation, state: bytes | None) -> tuple[bool, bytes | None]:
    """(is the op's output consistent with `state`, the state after it)."""
    if op.kind == "put":
        return True, op.value
    if op.kind == "get":
        return op.response == PENDING or op.output == state, state
    swapped = state == op.expected
    if op.response != PENDING and op.output != swapped:
        return False, state
    return True, (op.value if swapped else state)


def check_register(ops: list[Operation], initial: bytes | None = None) -> bool:
    """True when some linearization of `ops` explains every answered output."""
    ops = sorted(ops, key=lambda o: o.invoke)
    answered_mask = sum(1 << i for i, o in enumerate(ops) if o.response != PENDING)
    seen: set[tuple[int, bytes | None]] = set()

    def search(done: int, state: bytes | None) -> bool:
        if done & answered_mask == answered_mask:
            return True  # the rest never answered: they may not have happened
        if (done, state) in seen:
            return False
        seen.add((done, state))
        horizon = min(ops[i].response for i in range(len(ops)) if not done >> i & 1)
        for i, op in enumerate(ops):
            if done >> i & 1:
                continue
            if op.invoke > horizon:
                break  # sorted by invoke: no later op can come first either
            ok, after = _step(op, state)
            if ok and search(done | 1 << i, after):
                return True
        return False

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(ops) + 100))
    try:
        return search(0, initial)
    finally:
        sys.setrecursionlimit(limit)


def check_history(ops: Iterable[Operation]) -> bytes | None:
    """None when linearizable; otherwise the first key whose history is not."""
    by_key: dict[bytes, list[Operation]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    for key in sorted(by_key):
        if not check_register(by_key[key]):
            return key
    return None
