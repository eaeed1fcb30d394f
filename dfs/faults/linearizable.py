"""Linearizability of recorded histories: Wing & Gong's search with the pruning of
Lowe and porcupine.

Each key is checked on its own (P-compositionality). The search linearizes, one at a
time, an operation that could come first (called before every remaining answer), and
remembers every (linearized set, model state) pair it has explored, so a state reached
again by another order is not searched twice. Operations never answered may take
effect at any point after their call, or not at all. A model says, for one operation
and one state, whether the recorded output is possible and what the state becomes.
"""

from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from dfs.faults.history import Operation

S = TypeVar("S", bound=Hashable)


class Model(Protocol[S]):
    def initial(self) -> S: ...

    def step(self, op: Operation, state: S) -> tuple[bool, S]:
        """(is `op`'s output possible in `state`, the state after `op`)."""
        ...


@dataclass(frozen=True)
class RegisterModel:
    """A register per key: put, get (None: absent) and compare-and-set."""

    start: bytes | None = None

    def initial(self) -> bytes | None:
        return self.start

    def step(self, op: Operation, state: bytes | None) -> tuple[bool, bytes | None]:
        if op.kind == "put":
            return True, op.value
        if op.kind == "get":
            return not op.answered or op.output == state, state
        swapped = state == op.expected
        if op.answered and op.output != swapped:
            return False, state
        return True, (op.value if swapped else state)


Entries = frozenset[tuple[bytes, bool]]  # (name, is a directory)


class DirectoryModel:
    """One directory's entries. Outputs are errno values (0: success; stat: 0 when
    the name exists), a listing is the sorted names. Files are created, renamed and
    unlinked; directories made. A listing is checked as one atomic read, which
    readdir through a mount is not (POSIX leaves entries changed meanwhile open), so
    mount workloads probe names with stat instead."""

    def initial(self) -> Entries:
        return frozenset()

    def step(self, op: Operation, state: Entries) -> tuple[bool, Entries]:
        names = {name: is_dir for name, is_dir in state}
        if op.kind == "list":
            return not op.answered or op.output == tuple(sorted(names)), state
        assert op.value is not None
        errno_value, after = self._effect(op, names, op.value)
        if op.answered and op.output != errno_value:
            return False, state
        return True, frozenset(after.items())

    @staticmethod
    def _effect(
        op: Operation, names: dict[bytes, bool], name: bytes
    ) -> tuple[int, dict[bytes, bool]]:
        if op.kind == "stat":
            return (0 if name in names else errno.ENOENT), names
        if op.kind in ("create", "mkdir"):
            if name in names:
                return errno.EEXIST, names
            return 0, {**names, name: op.kind == "mkdir"}
        if op.kind == "unlink":
            if name not in names:
                return errno.ENOENT, names
            if names[name]:
                return errno.EISDIR, names
            return 0, {n: d for n, d in names.items() if n != name}
        if op.kind == "rename":
            source = op.expected
            assert source is not None
            if source not in names:
                return errno.ENOENT, names
            if source == name:
                return 0, names
            if names.get(name) is True and not names[source]:
                return errno.EISDIR, names
            if names.get(name) is False and names[source]:
                return errno.ENOTDIR, names
            moved = {n: d for n, d in names.items() if n != source}
            moved[name] = names[source]
            return 0, moved
        raise ValueError(f"unknown directory operation {op.kind!r}")


@dataclass
class _Frame(Generic[S]):
    done: int  # bitmask of linearized operations
    state: S
    candidates: list[int]
    next_candidate: int = 0


def check_operations(
    ops: Iterable[Operation], model: Model[S], max_states: int = 2_000_000
) -> bool:
    """True when some linearization of `ops` (one key) explains every answered output.

    Raises RuntimeError past `max_states` explored states rather than run unbounded.
    """
    ordered = sorted(ops, key=lambda o: o.invoke)
    answered_mask = sum(1 << i for i, o in enumerate(ordered) if o.answered)
    seen: set[tuple[int, S]] = set()

    def candidates(done: int) -> list[int]:
        """Not yet linearized and called before every remaining answer."""
        found: list[int] = []
        horizon = float("inf")
        first_open = (~done & (done + 1)).bit_length() - 1  # lowest not yet linearized
        for i in range(first_open, len(ordered)):
            op = ordered[i]
            if done >> i & 1:
                continue
            if op.invoke > horizon:
                break  # sorted by invoke: none later can come first either
            found.append(i)
            horizon = min(horizon, op.response)
        return [i for i in found if ordered[i].invoke <= horizon]

    initial = model.initial()
    stack = [_Frame(0, initial, candidates(0))]
    seen.add((0, initial))
    while stack:
        frame = stack[-1]
        if frame.done & answered_mask == answered_mask:
            return True  # the rest never answered: they may not have happened
        if frame.next_candidate >= len(frame.candidates):
            stack.pop()
            continue
        i = frame.candidates[frame.next_candidate]
        frame.next_candidate += 1
        ok, after = model.step(ordered[i], frame.state)
        done = frame.done | 1 << i
        if not ok or (done, after) in seen:
            continue
        seen.add((done, after))
        if len(seen) > max_states:
            raise RuntimeError(f"linearizability search passed {max_states} states")
        stack.append(_Frame(done, after, candidates(done)))
    return False


def check_register(ops: list[Operation], initial: bytes | None = None) -> bool:
    """True when the register history of one key is linearizable."""
    return check_operations(ops, RegisterModel(initial))


def first_violation(ops: Iterable[Operation], model: Model[S]) -> bytes | None:
    """None when every key's history is linearizable; otherwise the first key that is not."""
    by_key: dict[bytes, list[Operation]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    for key in sorted(by_key):
        if not check_operations(by_key[key], model):
            return key
    return None


def check_history(ops: Iterable[Operation]) -> bytes | None:
    """A KV history: None when linearizable, else the first key that is not."""
    return first_violation(ops, RegisterModel())
