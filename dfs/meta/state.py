"""The whole replicated namespace state and the small helpers every operation shares
(finding inodes, checking names, attributes, orphaning).

Pure data: nothing here reads a clock or does I/O; the current time is `now`, set by
the state machine from the command's context before each operation.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from dfs.meta import perms
from dfs.meta.chunks import ChunkTable
from dfs.meta.inode import Directory, Inode
from dfs.meta.ringdata import RingData
from dfs.meta.types import (
    DEFAULT_BLOCK_SIZE,
    NAME_MAX,
    ROOT_INO,
    X_OK,
    Attr,
    Caller,
    Kind,
)

# Inode numbers are never reused, so every inode is generation 1 of its number.
GENERATION = 1
DOT = b"."
DOTDOT = b".."


class NamespaceState:
    __slots__ = (
        "before_change",
        "block_size",
        "chunks",
        "inodes",
        "next_ino",
        "now",
        "open_reports",
        "orphans",
        "ring",
    )

    def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE, root_time_ns: int = 0) -> None:
        self.block_size = block_size
        self.now = root_time_ns
        root = Inode(ROOT_INO, Kind.DIRECTORY, 0o755, 0, 0, 2, root_time_ns, Directory(ROOT_INO))
        self.inodes: dict[int, Inode] = {ROOT_INO: root}
        self.next_ino = ROOT_INO + 1
        self.chunks = ChunkTable()
        self.ring = RingData()
        # ino -> state time it reached nlink 0; freed by a ReleaseOrphans command.
        self.orphans: dict[int, int] = {}
        # session -> inodes it last reported open.
        self.open_reports: dict[int, tuple[int, ...]] = {}
        # Called with each existing inode just before an operation changes or frees it,
        # so an incremental snapshot can save the inode's image first (copy on write).
        self.before_change: Callable[[Inode], None] | None = None

    # ---- lookups ----------------------------------------------------------------

    def directory(self, ino: int, caller: Caller) -> tuple[int, Inode | None]:
        """The directory `ino` if caller may search it: (0, inode) or (errno, None)."""
        inode = self.inodes.get(ino)
        if inode is None:
            return errno.ENOENT, None
        if inode.kind != Kind.DIRECTORY:
            return errno.ENOTDIR, None
        if not perms.permitted(inode, caller, X_OK):
            return errno.EACCES, None
        return 0, inode

    def child(self, parent: Inode, name: bytes) -> Inode | None:
        ino = parent.directory.get(name)
        return None if ino is None else self.inodes[ino]

    def allocate_ino(self) -> int:
        ino = self.next_ino
        self.next_ino = ino + 1
        return ino

    # ---- changes every operation shares --------------------------------------------

    def changing(self, *inodes: Inode) -> None:
        """Every operation calls this before it changes existing inodes."""
        hook = self.before_change
        if hook is not None:
            for inode in inodes:
                hook(inode)

    def touch_dir(self, parent: Inode) -> None:
        self.changing(parent)
        parent.mtime = parent.ctime = self.now

    def drop_link(self, inode: Inode) -> None:
        """One name of `inode` went away; at zero it becomes an orphan."""
        self.changing(inode)
        if inode.kind == Kind.DIRECTORY:
            inode.nlink = 0
        else:
            inode.nlink -= 1
        inode.ctime = self.now
        if inode.nlink == 0:
            self.orphans[inode.ino] = self.now

    def attr(self, inode: Inode) -> Attr:
        size = len(inode.target) if inode.kind == Kind.SYMLINK else inode.size
        if inode.kind == Kind.DIRECTORY:
            size = len(inode.directory)
        return Attr(
            ino=inode.ino,
            kind=inode.kind,
            mode=inode.mode,
            uid=inode.uid,
            gid=inode.gid,
            nlink=inode.nlink,
            size=size,
            atime_ns=inode.atime,
            mtime_ns=inode.mtime,
            ctime_ns=inode.ctime,
            rdev=inode.rdev,
            generation=GENERATION,
            blksize=self.block_size,
        )


def name_error(name: bytes) -> int:
    """errno for a name no entry may have (0 when fine); '.' and '..' are the callers'."""
    if not name:
        return errno.ENOENT
    if len(name) > NAME_MAX:
        return errno.ENAMETOOLONG
    if b"/" in name or b"\0" in name:
        return errno.EINVAL
    return 0
