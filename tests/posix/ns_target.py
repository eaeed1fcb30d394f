"""NamespaceTarget: runs vocabulary operations on the namespace state machine, resolving
paths component by component as a client does (lookup per component, symlinks followed
where the syscall follows them).

Commands go through the byte codec and `apply`, as the replicated log delivers them,
so the tables exercise the codec too. Symlink targets are resolved relative to the
test root when absolute.
"""

from __future__ import annotations

import errno
import stat

from dfs.meta import codec
from dfs.meta.ops import (
    Access,
    AllocChunkIds,
    BlockUpdate,
    Command,
    Commit,
    GetAttr,
    GetXattr,
    Link,
    ListXattr,
    Lookup,
    MakeNode,
    Open,
    ReadDir,
    Readlink,
    Remove,
    RemoveXattr,
    Rename,
    SetAttr,
    SetXattr,
    StatFs,
)
from dfs.meta.results import (
    AllocResult,
    AttrResult,
    ListXattrResult,
    ReadDirResult,
    ReadlinkResult,
    Result,
    StatFsResult,
    XattrResult,
)
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT_INO, Attr, Caller, Kind, Slice, TimeSet
from dfs.paxos.machine import ApplyContext
from tests.posix.vocab import (
    OK,
    TYPE_BITS,
    Creds,
    decode_name,
    decode_path,
    errno_result,
    names_text,
    parse_mode,
    stat_field,
)

KIND_BITS = {
    Kind.REGULAR: stat.S_IFREG,
    Kind.DIRECTORY: stat.S_IFDIR,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.FIFO: stat.S_IFIFO,
    Kind.SOCKET: stat.S_IFSOCK,
    Kind.CHAR_DEVICE: stat.S_IFCHR,
    Kind.BLOCK_DEVICE: stat.S_IFBLK,
}
BITS_KIND = {bits: kind for kind, bits in KIND_BITS.items()}
MAX_SYMLINK_HOPS = 40  # Linux's limit before ELOOP
SESSION = 1
READDIR_PAGE = 3  # small pages so every listing exercises cookie resumption
_OPEN_FLAGS = {"O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_TRUNC": 0o1000}
_ACCESS = {"F_OK": 0, "R_OK": 4, "W_OK": 2, "X_OK": 1}
_RENAME_FLAGS = {"0": 0, "NOREPLACE": 1, "EXCHANGE": 2}
_XATTR_FLAGS = {"0": 0, "CREATE": 1, "REPLACE": 2}


class _Failed(Exception):
    """Path resolution failed with this errno."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _flags(text: str, table: dict[str, int]) -> int:
    value = 0
    for part in text.split("|"):
        value |= table[part]
    return value


def _errno(result: Result) -> int:
    code: int = getattr(result, "errno")  # noqa: B009 - every result here carries one
    return code


def _code(result: Result) -> str:
    return errno_result(_errno(result))


def _caller(creds: Creds) -> Caller:
    return Caller(creds.uid, creds.gid, creds.groups)


def _time(text: str) -> tuple[TimeSet, int]:
    if text == "now":
        return TimeSet.NOW, 0
    if text == "omit":
        return TimeSet.OMIT, 0
    return TimeSet.VALUE, int(text)


class NamespaceTarget:
    def __init__(self, block_size: int = 1 << 16) -> None:
        self.block_size = block_size
        self.machine = NamespaceMachine(block_size)
        self.clock_ns = 1_000_000_000
        self.slot = 0
        self.log: list[tuple[bytes, ApplyContext]] = []
        self._chunk_ids: list[int] = []

    # ---- plumbing ----------------------------------------------------------------

    def command(self, command: Command) -> Result:
        self.clock_ns += 1000
        self.slot += 1
        ctx = ApplyContext(slot=self.slot, index=0, time_ns=self.clock_ns, session=SESSION)
        encoded = codec.encode_command(command)
        self.log.append((encoded, ctx))
        return codec.decode_result(self.machine.apply(encoded, ctx))

    def reset(self, owner: Creds, mode: int) -> None:
        self.machine = NamespaceMachine(self.block_size)
        self.log = []
        self._chunk_ids = []
        root = Caller(0, 0)
        result = self.command(SetAttr(root, ROOT_INO, mode=mode, uid=owner.uid, gid=owner.gid))
        assert result == AttrResult(0, result.attr) and isinstance(result, AttrResult)

    def _lookup(self, caller: Caller, parent: int, name: bytes) -> Attr:
        result = self.machine.query(Lookup(caller, parent, name))
        assert isinstance(result, AttrResult)
        if result.errno:
            raise _Failed(result.errno)
        assert result.attr is not None
        return result.attr

    def _walk(self, caller: Caller, start: int, path: bytes, follow: bool, hops: int) -> Attr:
        """The inode `path` names, starting at directory `start`."""
        if path.startswith(b"/"):
            start, path = ROOT_INO, path.lstrip(b"/")
        parts = [part for part in path.split(b"/") if part] or [b"."]
        current = start
        for position, part in enumerate(parts):
            attr = self._lookup(caller, current, part)
            last = position == len(parts) - 1
            if attr.kind == Kind.SYMLINK and (follow or not last):
                if hops >= MAX_SYMLINK_HOPS:
                    raise _Failed(errno.ELOOP)
                target = self.machine.query(Readlink(caller, attr.ino))
                assert isinstance(target, ReadlinkResult)
                attr = self._walk(caller, current, target.target, True, hops + 1)
            if not last:
                if attr.kind != Kind.DIRECTORY:
                    raise _Failed(errno.ENOTDIR)
                current = attr.ino
        return attr

    def resolve(self, caller: Caller, path: bytes, follow: bool = True) -> Attr:
        return self._walk(caller, ROOT_INO, path, follow, 0)

    def resolve_parent(self, caller: Caller, path: bytes) -> tuple[int, bytes]:
        head, _, name = path.rstrip(b"/").rpartition(b"/")
        parent_ino = ROOT_INO
        if head:
            parent = self.resolve(caller, head)
            if parent.kind != Kind.DIRECTORY:
                raise _Failed(errno.ENOTDIR)
            parent_ino = parent.ino
        # The kernel's walk checks search permission on the last directory too, before
        # a two-path call (rename, link) resolves its second path.
        self._lookup(caller, parent_ino, b".")
        return parent_ino, name

    # ---- the vocabulary ------------------------------------------------------------

    def run(self, creds: Creds, op: str, args: list[str]) -> str:
        caller = _caller(creds)
        try:
            return getattr(self, "_op_" + op)(caller, *args)  # type: ignore[no-any-return]
        except _Failed as failure:
            return errno_result(failure.code)

    def _make(self, caller: Caller, path: str, kind: Kind, mode: int, **extra: object) -> str:
        parent, name = self.resolve_parent(caller, decode_path(path))
        result = self.command(MakeNode(caller, parent, name, kind, mode, **extra))  # type: ignore[arg-type]
        return _code(result)

    def _op_mkdir(self, caller: Caller, path: str, mode: str) -> str:
        return self._make(caller, path, Kind.DIRECTORY, parse_mode(mode))

    def _op_mknod(self, caller: Caller, path: str, kind: str, mode: str, rdev: str) -> str:
        node_kind = BITS_KIND[TYPE_BITS[kind]]
        return self._make(caller, path, node_kind, parse_mode(mode), rdev=int(rdev))

    def _op_create(self, caller: Caller, path: str, mode: str) -> str:
        return self._make(caller, path, Kind.REGULAR, parse_mode(mode), exclusive=True)

    def _op_symlink(self, caller: Caller, target: str, path: str) -> str:
        return self._make(caller, path, Kind.SYMLINK, 0o777, target=decode_path(target))

    def _op_open(self, caller: Caller, path: str, flags: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        open_flags = _flags(flags, _OPEN_FLAGS)
        result = self.machine.query(Open(caller, attr.ino, open_flags))
        if _errno(result) or not open_flags & _OPEN_FLAGS["O_TRUNC"] or attr.kind != Kind.REGULAR:
            return _code(result)
        return _code(self.command(SetAttr(caller, attr.ino, size=0)))

    def _remove(self, caller: Caller, path: str, directory: bool) -> str:
        parent, name = self.resolve_parent(caller, decode_path(path))
        return _code(self.command(Remove(caller, parent, name, directory)))

    def _op_unlink(self, caller: Caller, path: str) -> str:
        return self._remove(caller, path, False)

    def _op_rmdir(self, caller: Caller, path: str) -> str:
        return self._remove(caller, path, True)

    def _op_renameat2(self, caller: Caller, old: str, new: str, flags: str) -> str:
        parent, name = self.resolve_parent(caller, decode_path(old))
        new_parent, new_name = self.resolve_parent(caller, decode_path(new))
        rename = Rename(caller, parent, name, new_parent, new_name, _flags(flags, _RENAME_FLAGS))
        return _code(self.command(rename))

    def _op_rename(self, caller: Caller, old: str, new: str) -> str:
        return self._op_renameat2(caller, old, new, "0")

    def _op_link(self, caller: Caller, old: str, new: str) -> str:
        attr = self.resolve(caller, decode_path(old), follow=False)
        parent, name = self.resolve_parent(caller, decode_path(new))
        return _code(self.command(Link(caller, attr.ino, parent, name)))

    def _op_readlink(self, caller: Caller, path: str) -> str:
        attr = self.resolve(caller, decode_path(path), follow=False)
        result = self.machine.query(Readlink(caller, attr.ino))
        assert isinstance(result, ReadlinkResult)
        return errno_result(result.errno) if result.errno else result.target.decode("latin-1")

    def _setattr(self, caller: Caller, path: str, follow: bool = True, **change: object) -> str:
        attr = self.resolve(caller, decode_path(path), follow)
        return _code(self.command(SetAttr(caller, attr.ino, **change)))  # type: ignore[arg-type]

    def _op_chmod(self, caller: Caller, path: str, mode: str) -> str:
        return self._setattr(caller, path, mode=parse_mode(mode))

    def _chown(self, caller: Caller, path: str, uid: str, gid: str, follow: bool) -> str:
        new_uid = None if int(uid) == -1 else int(uid)
        new_gid = None if int(gid) == -1 else int(gid)
        return self._setattr(caller, path, follow, uid=new_uid, gid=new_gid)

    def _op_chown(self, caller: Caller, path: str, uid: str, gid: str) -> str:
        return self._chown(caller, path, uid, gid, True)

    def _op_lchown(self, caller: Caller, path: str, uid: str, gid: str) -> str:
        return self._chown(caller, path, uid, gid, False)

    def _op_truncate(self, caller: Caller, path: str, size: str) -> str:
        return self._setattr(caller, path, size=int(size))

    def _op_utimensat(self, caller: Caller, path: str, atime: str, mtime: str) -> str:
        (atime_set, atime_ns), (mtime_set, mtime_ns) = _time(atime), _time(mtime)
        if atime_set == mtime_set == TimeSet.OMIT:
            return OK  # the kernel answers this one itself, before it resolves the path
        return self._setattr(
            caller,
            path,
            atime_set=atime_set,
            atime_ns=atime_ns,
            mtime_set=mtime_set,
            mtime_ns=mtime_ns,
        )

    def _op_write(self, caller: Caller, path: str, offset: str, length: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        opened = self.machine.query(Open(caller, attr.ino, _OPEN_FLAGS["O_WRONLY"]))
        if _errno(opened):
            return _code(opened)
        start, end = int(offset), int(offset) + int(length)
        updates = []
        position = start
        while position < end:
            block, in_block = divmod(position, self.block_size)
            piece = min(end - position, self.block_size - in_block)
            chunk_id = self._chunk_id()
            updates.append(BlockUpdate(block, (Slice(in_block, piece, chunk_id, 0, 1),)))
            position += piece
        result = self.command(Commit(caller, attr.ino, tuple(updates), end))
        return _code(result)

    def _chunk_id(self) -> int:
        if not self._chunk_ids:
            allocated = self.command(AllocChunkIds(64))
            assert isinstance(allocated, AllocResult) and allocated.errno == 0
            self._chunk_ids = list(
                range(allocated.first + allocated.count - 1, allocated.first - 1, -1)
            )
        return self._chunk_ids.pop()

    def _stat(self, caller: Caller, path: str, field: str, follow: bool) -> str:
        attr = self.resolve(caller, decode_path(path), follow)
        mode = KIND_BITS[attr.kind] | attr.mode
        return stat_field(field, mode, attr.uid, attr.gid, attr.nlink, attr.size)

    def _op_stat(self, caller: Caller, path: str, field: str) -> str:
        return self._stat(caller, path, field, True)

    def _op_lstat(self, caller: Caller, path: str, field: str) -> str:
        return self._stat(caller, path, field, False)

    def _setxattr(
        self, caller: Caller, path: str, name: str, value: str, flags: str, follow: bool
    ) -> str:
        attr = self.resolve(caller, decode_path(path), follow)
        change = SetXattr(
            caller, attr.ino, decode_name(name), decode_name(value), _flags(flags, _XATTR_FLAGS)
        )
        return _code(self.command(change))

    def _op_setxattr(self, caller: Caller, path: str, name: str, value: str, flags: str) -> str:
        return self._setxattr(caller, path, name, value, flags, True)

    def _op_lsetxattr(self, caller: Caller, path: str, name: str, value: str, flags: str) -> str:
        return self._setxattr(caller, path, name, value, flags, False)

    def _getxattr(self, caller: Caller, path: str, name: str, size: str, follow: bool) -> str:
        attr = self.resolve(caller, decode_path(path), follow)
        result = self.machine.query(GetXattr(caller, attr.ino, decode_name(name), int(size)))
        assert isinstance(result, XattrResult)
        return errno_result(result.errno) if result.errno else result.value.decode("latin-1") or "-"

    def _op_getxattr(self, caller: Caller, path: str, name: str, size: str) -> str:
        return self._getxattr(caller, path, name, size, True)

    def _op_lgetxattr(self, caller: Caller, path: str, name: str, size: str) -> str:
        return self._getxattr(caller, path, name, size, False)

    def _op_listxattr(self, caller: Caller, path: str, size: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        result = self.machine.query(ListXattr(caller, attr.ino, int(size)))
        assert isinstance(result, ListXattrResult)
        if result.errno:
            return errno_result(result.errno)
        return names_text([name.decode("latin-1") for name in result.names])

    def _op_removexattr(self, caller: Caller, path: str, name: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        return _code(self.command(RemoveXattr(caller, attr.ino, decode_name(name))))

    def _op_access(self, caller: Caller, path: str, mask: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        result = self.machine.query(Access(caller, attr.ino, _flags(mask, _ACCESS)))
        return _code(result)

    def list_names(self, caller: Caller, ino: int) -> tuple[int, list[bytes]]:
        names: list[bytes] = []
        cookie = 0
        while True:
            page = self.machine.query(ReadDir(caller, ino, cookie, READDIR_PAGE))
            assert isinstance(page, ReadDirResult)
            if page.errno:
                return page.errno, []
            names.extend(entry.name for entry in page.entries)
            if page.eof:
                return 0, names
            cookie = page.entries[-1].cookie

    def _op_readdir(self, caller: Caller, path: str) -> str:
        attr = self.resolve(caller, decode_path(path))
        failure, names = self.list_names(caller, attr.ino)
        if failure:
            return errno_result(failure)
        return names_text([name.decode("latin-1") for name in names])

    def _op_statfs(self, caller: Caller, field: str) -> str:
        result = self.machine.query(StatFs(caller))
        assert isinstance(result, StatFsResult) and field == "namemax"
        return str(result.namemax)

    # ---- whole-tree view (differential test) -----------------------------------------

    def tree(self) -> list[list[object]]:
        rows: list[list[object]] = []
        root = Caller(0, 0)
        pending: list[tuple[int, str]] = [(ROOT_INO, "")]
        while pending:
            ino, prefix = pending.pop()
            failure, names = self.list_names(root, ino)
            assert failure == 0
            for name in names:
                attr = self._lookup(root, ino, name)
                path = prefix + name.decode("latin-1")
                size = attr.size if attr.kind in (Kind.REGULAR, Kind.SYMLINK) else 0
                kind = KIND_BITS[attr.kind]
                rows.append([path, kind, attr.mode, attr.uid, attr.gid, attr.nlink, size])
                if attr.kind == Kind.DIRECTORY:
                    pending.append((attr.ino, path + "/"))
        result = self.machine.query(GetAttr(root, ROOT_INO))
        assert isinstance(result, AttrResult) and result.errno == 0
        return sorted(rows)
