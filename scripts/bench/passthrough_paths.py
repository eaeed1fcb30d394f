"""The passthrough file system's map between FUSE inode numbers and backing paths.

An inode may have several paths (hard links); a renamed directory moves the paths
of everything known below it. Pure bookkeeping: no system calls here.
"""

from __future__ import annotations

SEP = b"/"


class PathTable:
    """inode -> its known backing paths, and path -> inode."""

    def __init__(self, root_inode: int, root_path: bytes) -> None:
        self.root_inode = root_inode
        self.root_path = root_path
        self._paths: dict[int, set[bytes]] = {root_inode: {root_path}}
        self._inode_at: dict[bytes, int] = {root_path: root_inode}

    def path(self, inode: int) -> bytes | None:
        """Any one current path of `inode`, or None if it has none left."""
        paths = self._paths.get(inode)
        return next(iter(paths)) if paths else None

    def inode_at(self, path: bytes) -> int | None:
        return self._inode_at.get(path)

    def known_paths(self) -> list[tuple[bytes, int]]:
        """Every (path, inode) known, e.g. to drop those changed behind the table's back."""
        return list(self._inode_at.items())

    def add(self, inode: int, path: bytes) -> None:
        previous = self._inode_at.get(path)
        if previous is not None and previous != inode:
            self._paths[previous].discard(path)
        self._paths.setdefault(inode, set()).add(path)
        self._inode_at[path] = inode

    def remove_path(self, path: bytes) -> None:
        """`path` no longer names anything (unlink, rmdir, replaced by a rename)."""
        inode = self._inode_at.pop(path, None)
        if inode is not None:
            self._paths[inode].discard(path)

    def move(self, old: bytes, new: bytes, is_dir: bool) -> None:
        """A rename of `old` to `new`; a directory carries the known paths below it."""
        self.remove_path(new)
        inode = self._inode_at.pop(old, None)
        if inode is not None:
            self._paths[inode].discard(old)
            self.add(inode, new)
        if not is_dir:
            return  # only directories have paths below them: no scan for a file
        prefix = old + SEP
        for path in [p for p in self._inode_at if p.startswith(prefix)]:
            child = self._inode_at.pop(path)
            self._paths[child].discard(path)
            self.add(child, new + path[len(old):])

    def forget(self, inode: int) -> None:
        """The kernel forgot `inode`: drop all its paths (never the root's)."""
        if inode == self.root_inode:
            return
        for path in self._paths.pop(inode, set()):
            if self._inode_at.get(path) == inode:
                del self._inode_at[path]

    def __len__(self) -> int:
        return len(self._paths)
