"""The operations the namespace understands: commands (go through the log) and queries
(read the current state, never change it).

Plain frozen records, one per syscall family, shaped after meta.proto so the server maps
a request to one of them field by field. COMMAND_TYPES fixes the wire tag of each
command: append new ones, never reorder.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfs.meta.fsckops import FsckRepair
from dfs.meta.types import ROOT, Caller, Kind, Slice, TimeSet

# ---- commands: mutate the state, go through the log --------------------------------


@dataclass(frozen=True, slots=True)
class MakeNode:
    """mknod, mkdir, create (O_EXCL when exclusive), symlink. mode: permission bits,
    already masked by the caller's umask."""

    caller: Caller
    parent: int
    name: bytes
    kind: Kind
    mode: int
    rdev: int = 0
    target: bytes = b""
    exclusive: bool = True


@dataclass(frozen=True, slots=True)
class Remove:
    """unlink (directory=False) or rmdir (directory=True)."""

    caller: Caller
    parent: int
    name: bytes
    directory: bool


@dataclass(frozen=True, slots=True)
class Rename:
    """rename/renameat2; flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2)."""

    caller: Caller
    parent: int
    name: bytes
    new_parent: int
    new_name: bytes
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    caller: Caller
    ino: int
    new_parent: int
    new_name: bytes


@dataclass(frozen=True, slots=True)
class SetAttr:
    """chmod, chown, truncate, utimensat; None leaves a field unchanged."""

    caller: Caller
    ino: int
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_set: TimeSet = TimeSet.OMIT
    atime_ns: int = 0
    mtime_set: TimeSet = TimeSet.OMIT
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class SetXattr:
    """flags: XATTR_CREATE (1), XATTR_REPLACE (2)."""

    caller: Caller
    ino: int
    name: bytes
    value: bytes
    flags: int = 0


@dataclass(frozen=True, slots=True)
class RemoveXattr:
    caller: Caller
    ino: int
    name: bytes


@dataclass(frozen=True, slots=True)
class AllocChunkIds:
    """A range of chunk ids for the issuing session (ApplyContext.session)."""

    count: int


@dataclass(frozen=True, slots=True)
class BlockUpdate:
    """New slices for one block, oldest first. replace=True is a compaction: the
    block's first replaces_count slices give way to `slices`; when replaces_last_chunk
    is non-zero the last of them must still name that chunk."""

    block: int
    slices: tuple[Slice, ...]
    replace: bool = False
    replaces_count: int = 0
    replaces_last_chunk: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """Slices written by the issuing session; size becomes max(size, end)."""

    caller: Caller
    ino: int
    updates: tuple[BlockUpdate, ...]
    end: int


@dataclass(frozen=True, slots=True)
class SetOpenInodes:
    """What a session reports open (proposed when its keepalive's set changes)."""

    session: int
    inodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReleaseOrphans:
    """Leader-proposed: free orphans (nlink 0) that became orphans before
    orphaned_before_ns and that no live session reports open."""

    orphaned_before_ns: int


@dataclass(frozen=True, slots=True)
class AckGC:
    """A data server deleted (or never held) these released chunks."""

    chunk_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RegisterData:
    id: int
    addr: str
    weight: int
    domain: str


@dataclass(frozen=True, slots=True)
class SetMemberState:
    id: int
    state: int


@dataclass(frozen=True, slots=True)
class SetMemberWeight:
    id: int
    weight: int


@dataclass(frozen=True, slots=True)
class RemoveMember:
    id: int


@dataclass(frozen=True, slots=True)
class SetReplication:
    replicas: int
    min_replicas: int
    vnodes_per_weight: int


@dataclass(frozen=True, slots=True)
class ReportUsage:
    """A data server's heartbeat figures, for statfs."""

    id: int
    capacity: int
    used: int


Command = (
    MakeNode
    | Remove
    | Rename
    | Link
    | SetAttr
    | SetXattr
    | RemoveXattr
    | AllocChunkIds
    | Commit
    | SetOpenInodes
    | ReleaseOrphans
    | AckGC
    | RegisterData
    | SetMemberState
    | SetMemberWeight
    | RemoveMember
    | SetReplication
    | ReportUsage
    | FsckRepair
)

# Wire tag = position + 1. Append only.
COMMAND_TYPES: tuple[type, ...] = (
    MakeNode,
    Remove,
    Rename,
    Link,
    SetAttr,
    SetXattr,
    RemoveXattr,
    AllocChunkIds,
    Commit,
    SetOpenInodes,
    ReleaseOrphans,
    AckGC,
    RegisterData,
    SetMemberState,
    SetMemberWeight,
    RemoveMember,
    SetReplication,
    ReportUsage,
    FsckRepair,
)

# ---- queries: read the current state ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    caller: Caller
    parent: int
    name: bytes


@dataclass(frozen=True, slots=True)
class GetAttr:
    caller: Caller
    ino: int


@dataclass(frozen=True, slots=True)
class ReadDir:
    """One page after `cookie` (0 = from the start). '.' and '..' are not listed."""

    caller: Caller
    ino: int
    cookie: int = 0
    limit: int = 1024
    with_attrs: bool = False


@dataclass(frozen=True, slots=True)
class Readlink:
    caller: Caller
    ino: int


@dataclass(frozen=True, slots=True)
class GetXattr:
    """size: the caller's buffer; 0 asks for the value whatever its length."""

    caller: Caller
    ino: int
    name: bytes
    size: int = 0


@dataclass(frozen=True, slots=True)
class ListXattr:
    """size: the caller's buffer for NUL-terminated names; 0 = any."""

    caller: Caller
    ino: int
    size: int = 0


@dataclass(frozen=True, slots=True)
class StatFs:
    caller: Caller = ROOT


@dataclass(frozen=True, slots=True)
class Access:
    caller: Caller
    ino: int
    mask: int


@dataclass(frozen=True, slots=True)
class Open:
    """open(2)'s permission check; flags carry O_ACCMODE and O_TRUNC."""

    caller: Caller
    ino: int
    flags: int


@dataclass(frozen=True, slots=True)
class GetBlockMap:
    """count 0 = to the end of the file."""

    caller: Caller
    ino: int
    first_block: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class ListChunkRefs:
    start: int
    limit: int


@dataclass(frozen=True, slots=True)
class FetchGC:
    limit: int


@dataclass(frozen=True, slots=True)
class GetRing:
    pass


Query = (
    Lookup
    | GetAttr
    | ReadDir
    | Readlink
    | GetXattr
    | ListXattr
    | StatFs
    | Access
    | Open
    | GetBlockMap
    | ListChunkRefs
    | FetchGC
    | GetRing
)

QUERY_TYPES: tuple[type, ...] = (
    Lookup,
    GetAttr,
    ReadDir,
    Readlink,
    GetXattr,
    ListXattr,
    StatFs,
    Access,
    Open,
    GetBlockMap,
    ListChunkRefs,
    FetchGC,
    GetRing,
)
