"""Compact in-memory records of the namespace: inodes and directories.

Owns the per-inode layout (slotted, no per-inode dicts unless the inode has xattrs or
blocks) and the directory's cookie order; knows no permissions and no operations.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from dfs.meta.types import Kind, Slice

# A directory keeps its cookie order as append-only parallel lists with dead entries
# left in place; they are dropped once they outnumber the live ones by this factor, so
# removal stays O(1) amortized and a resumed listing is a bisect.
_COMPACT_FACTOR = 2
_FIRST_COOKIE = 1  # cookie 0 means "from the start"


class Directory:
    """Names -> (inode, cookie); cookies grow per directory and are never reused."""

    __slots__ = ("entries", "next_cookie", "order_cookies", "order_names", "parent")

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.entries: dict[bytes, tuple[int, int]] = {}
        self.next_cookie = _FIRST_COOKIE
        self.order_cookies: list[int] = []
        self.order_names: list[bytes] = []

    def get(self, name: bytes) -> int | None:
        entry = self.entries.get(name)
        return None if entry is None else entry[0]

    def add(self, name: bytes, ino: int) -> None:
        """Adds a new entry (the name must be absent) with a fresh cookie."""
        cookie = self.next_cookie
        self.next_cookie = cookie + 1
        self.entries[name] = (ino, cookie)
        self.order_cookies.append(cookie)
        self.order_names.append(name)

    def remove(self, name: bytes) -> None:
        del self.entries[name]
        if len(self.order_cookies) > _COMPACT_FACTOR * len(self.entries) + 16:
            self._compact()

    def restore_entry(self, name: bytes, ino: int, cookie: int) -> None:
        """Adds an entry with a known cookie (snapshot restore, in cookie order)."""
        self.entries[name] = (ino, cookie)
        self.order_cookies.append(cookie)
        self.order_names.append(name)

    def _compact(self) -> None:
        live = [
            (cookie, name)
            for cookie, name in zip(self.order_cookies, self.order_names, strict=True)
            if self._is_live(cookie, name)
        ]
        self.order_cookies = [cookie for cookie, _ in live]
        self.order_names = [name for _, name in live]

    def _is_live(self, cookie: int, name: bytes) -> bool:
        entry = self.entries.get(name)
        return entry is not None and entry[1] == cookie

    def iter_from(self, after_cookie: int) -> Iterator[tuple[bytes, int, int]]:
        """Live entries (name, ino, cookie) with cookie > after_cookie, in cookie order."""
        position = bisect_right(self.order_cookies, after_cookie)
        cookies = self.order_cookies
        names = self.order_names
        while position < len(cookies):
            cookie = cookies[position]
            name = names[position]
            entry = self.entries.get(name)
            if entry is not None and entry[1] == cookie:
                yield name, entry[0], cookie
            position += 1

    def __len__(self) -> int:
        return len(self.entries)


# What an inode's payload holds, by kind: a Directory, a symlink's target bytes, a
# regular file's block map (None until the first slice), a device number.
BlockSlices = dict[int, list[Slice]]
Payload = Directory | bytes | BlockSlices | int | None


class Inode:
    """One inode. Times are ns; mode is the low 12 bits; nlink counts names (and '.')."""

    __slots__ = (
        "atime",
        "ctime",
        "gid",
        "ino",
        "kind",
        "mode",
        "mtime",
        "nlink",
        "payload",
        "size",
        "uid",
        "xattrs",
    )

    def __init__(
        self,
        ino: int,
        kind: Kind,
        mode: int,
        uid: int,
        gid: int,
        nlink: int,
        time_ns: int,
        payload: Payload,
    ) -> None:
        self.ino = ino
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.size = 0
        self.atime = time_ns
        self.mtime = time_ns
        self.ctime = time_ns
        self.payload: Payload = payload
        self.xattrs: dict[bytes, bytes] | None = None

    @property
    def directory(self) -> Directory:
        assert isinstance(self.payload, Directory)
        return self.payload

    @property
    def rdev(self) -> int:
        if self.kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE) and isinstance(self.payload, int):
            return self.payload
        return 0

    @property
    def target(self) -> bytes:
        assert isinstance(self.payload, bytes)
        return self.payload

    def blocks(self) -> BlockSlices:
        """The block map of a regular file, created on first use."""
        if self.payload is None:
            self.payload = {}
        assert isinstance(self.payload, dict)
        return self.payload

    def block_map(self) -> BlockSlices | None:
        return self.payload if isinstance(self.payload, dict) else None
