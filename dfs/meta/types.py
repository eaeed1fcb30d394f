"""Plain values the namespace speaks in: file kinds, the caller, attributes, slices, limits.

Owns the vocabulary shared by the state, the operations and the codec; holds no state
and must never import anything that does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

ROOT_INO = 1
NAME_MAX = 255  # bytes in one directory entry name, as Linux's NAME_MAX
PATH_MAX = 4096  # bytes in a symlink target including the NUL Linux counts
LINK_MAX = 65000  # hard links per inode, ext4's limit, so tools see familiar numbers
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536  # one value, the VFS limit
XATTR_LIST_MAX = 65536  # all names of one inode, NUL-terminated, the VFS limit
XATTR_TOTAL_MAX = 1 << 20  # names + values of one inode; beyond it ENOSPC
MAX_FILE_SIZE = (1 << 63) - 1
DEFAULT_BLOCK_SIZE = 4 << 20
STATFS_BSIZE = 4096
MAX_INODES = 1 << 40  # reported as statfs files; inode numbers never run out in practice

# Permission-bit masks of st_mode.
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000
S_IXGRP = 0o0010
PERM_MASK = 0o7777

# access(2)/open masks.
R_OK = 4
W_OK = 2
X_OK = 1

# renameat2 flags.
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
# setxattr flags.
XATTR_CREATE = 1
XATTR_REPLACE = 2
# open(2) access modes.
O_ACCMODE = 3
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_TRUNC = 0o1000


class Kind(enum.IntEnum):
    """File kinds; the numbers are common.proto's FileKind."""

    REGULAR = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5
    CHAR_DEVICE = 6
    BLOCK_DEVICE = 7


class MemberState(enum.IntEnum):
    """Ring member states; the numbers are common.proto's MemberState."""

    UP = 1
    DOWN = 2
    OUT = 3
    DRAINING = 4


class TimeSet(enum.IntEnum):
    """How setattr changes a time; the numbers are meta.proto's TimeSet."""

    OMIT = 0
    NOW = 1
    VALUE = 2


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: effective uid, gid and supplementary groups, as Linux checks them."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


ROOT = Caller(0, 0)


class Attr(NamedTuple):
    """stat(2) of one inode. A named tuple, not a dataclass: every answer builds one,
    and a tuple is built four times faster."""

    ino: int
    kind: Kind
    mode: int  # the low 12 bits of st_mode
    uid: int
    gid: int
    nlink: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    rdev: int
    generation: int
    blksize: int


class Slice(NamedTuple):
    """Bytes [offset, offset + length) of a block come from chunk_id at offset_in_chunk.
    A named tuple: block maps hold millions, and tuples are compact and quick to build."""

    offset: int
    length: int
    chunk_id: int
    offset_in_chunk: int
    epoch: int


@dataclass(frozen=True, slots=True)
class BlockMap:
    """The slices of one block, oldest first."""

    block: int
    slices: tuple[Slice, ...]


@dataclass(frozen=True, slots=True)
class RingMember:
    """One data server in the ring."""

    id: int
    addr: str
    weight: int
    domain: str
    state: MemberState


@dataclass(frozen=True, slots=True)
class Ring:
    """The ring as plain data; placement is computed elsewhere (dfs/placement)."""

    epoch: int
    members: tuple[RingMember, ...]
    replicas: int
    min_replicas: int
    vnodes_per_weight: int
