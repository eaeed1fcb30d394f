"""The contract between the replicated log and the state machines it drives.

The log hands every chosen command, in slot order, to `apply` on every replica;
apply must be deterministic: the same commands in the same order give the same
state and the same results on every replica, so it may not read a clock, a
random source, a file or the network. Time arrives in the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What the log knows about the command being applied."""

    slot: int  # log slot holding the command
    index: int  # position of the command within the slot's batch
    time_ns: int  # state time: max(previous state time, the leader's stamp); never decreases
    session: int  # client session that issued the command; 0 for leader/system commands


class StateMachine(Protocol):
    """A deterministic state machine behind the log (and behind the session layer)."""

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        """Apply one chosen command and return its encoded result."""
        ...

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        """A session expired or was closed: release what it held (chunk-id ranges,
        open-inode reports). Called in log order like any command."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, encoded with a format version."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot made by `snapshot`."""
        ...
