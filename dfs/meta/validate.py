"""Range checks on the numbers a command would store, so no command can put a value in
the state that the snapshot format cannot hold.

The metadata server validates requests first (INVALID_ARGUMENT); this is the machine's
own guard, identical on every replica: an out-of-range command is refused with EINVAL.
"""

from __future__ import annotations

from dfs.meta.fsckops import FsckRepair
from dfs.meta.ops import (
    Command,
    Commit,
    MakeNode,
    RegisterData,
    ReportUsage,
    SetAttr,
    SetOpenInodes,
    SetReplication,
)
from dfs.meta.types import Caller

U32 = 1 << 32
U64 = 1 << 64
I64 = 1 << 63


def _u32(*values: int) -> bool:
    return all(0 <= value < U32 for value in values)


def _u64(*values: int) -> bool:
    return all(0 <= value < U64 for value in values)


def _caller_ok(caller: Caller) -> bool:
    return _u32(caller.uid, caller.gid, *caller.groups)


def in_range(command: Command) -> bool:
    """Whether every number `command` may store fits the state's fixed-width fields."""
    match command:
        case MakeNode():
            return _caller_ok(command.caller) and _u64(command.rdev)
        case SetAttr():
            ids = [value for value in (command.uid, command.gid) if value is not None]
            times_ok = all(-I64 <= t < I64 for t in (command.atime_ns, command.mtime_ns))
            return _caller_ok(command.caller) and _u32(*ids) and times_ok
        case Commit():
            slices = [piece for update in command.updates for piece in update.slices]
            return _caller_ok(command.caller) and all(
                _u32(piece.offset_in_chunk) and _u64(piece.epoch) for piece in slices
            )
        case RegisterData():
            return _u32(command.id, command.weight)
        case ReportUsage():
            return _u32(command.id) and _u64(command.capacity, command.used)
        case SetReplication():
            return _u32(command.replicas, command.min_replicas, command.vnodes_per_weight)
        case SetOpenInodes():
            return _u64(command.session, *command.inodes)
        case FsckRepair():
            return (
                all(_u64(f.ino) and _u32(f.seen, f.counted) for f in command.nlinks)
                and all(_u64(f.parent, f.ino) for f in command.dangling)
                and all(_u64(f.ino, f.seen, f.actual) for f in command.parents)
                and all(_u64(f.chunk_id) and _u32(f.seen, f.counted) for f in command.chunk_refs)
            )
    return True
