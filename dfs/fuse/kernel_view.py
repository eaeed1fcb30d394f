"""What the kernel was last told about each inode's size and mtime, so open() can keep
close-to-open consistency: when the file changed since (another mount wrote it), the
kernel's cached attributes are invalidated and its page cache is not kept.

Owns only that bookkeeping; it never talks to the cluster.
"""

from __future__ import annotations

from dfs.rpc import common_pb2


class KernelView:
    """(size, mtime) per inode as last handed to the kernel."""

    def __init__(self) -> None:
        self._told: dict[int, tuple[int, int]] = {}

    def told(self, attr: common_pb2.Attr) -> None:
        """The kernel was just given `attr` (a lookup, getattr, setattr, readdir...)."""
        self._told[attr.ino] = (attr.size, attr.mtime_ns)

    def stale(self, attr: common_pb2.Attr) -> bool:
        """Whether what the kernel caches for `attr.ino` may differ from `attr` (fresh
        from the servers at open); records `attr` as what it will see next."""
        before = self._told.get(attr.ino)
        self.told(attr)
        return before != (attr.size, attr.mtime_ns)

    def forget(self, ino: int) -> None:
        """The kernel dropped the inode: nothing of it is cached any more."""
        self._told.pop(ino, None)
