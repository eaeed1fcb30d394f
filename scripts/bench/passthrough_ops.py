"""pyfuse3 Operations that pass every request straight to a backing directory.

The least work a pyfuse3 file system can do per request, so its speed is the
ceiling of any pyfuse3 client here. Backing inode numbers are the FUSE inode
numbers (the backing root is FUSE's root); paths come from a PathTable.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pyfuse3
import trio
from passthrough_paths import PathTable

FileHandle = int


@dataclass(frozen=True, slots=True)
class CacheTimeouts:
    """How long the kernel may trust what we answered, in seconds."""

    entry_s: float
    attr_s: float


@contextmanager
def errno_reply() -> Iterator[None]:
    """Turn a failed backing syscall into the same errno for the FUSE caller."""
    try:
        yield
    except OSError as err:
        raise pyfuse3.FUSEError(err.errno or errno.EIO) from None


class Passthrough(pyfuse3.Operations):
    """Mirror of `source`; mutations go to the backing file system as they come."""

    def __init__(
        self, source: bytes, timeouts: CacheTimeouts, writeback_cache: bool, keep_cache: bool
    ) -> None:
        super().__init__()
        self.enable_writeback_cache = writeback_cache
        # Only this mount changes the backing files, so cached pages stay valid
        # across opens (the dfs mount keeps them too, unless a file changed elsewhere).
        self._keep_cache = keep_cache
        self._timeouts = timeouts
        self._root_backing_ino = os.lstat(source).st_ino
        self._paths = PathTable(pyfuse3.ROOT_INODE, source)
        self._lookups: dict[int, int] = {}
        # Directory listings are snapshotted at opendir so offsets stay stable.
        self._listings: dict[FileHandle, list[bytes]] = {}
        self._dir_inode: dict[FileHandle, int] = {}
        self._next_dir_fh = 1
        # Open files by fd: getattr of an unlinked but open file answers from it.
        self._open_inode: dict[FileHandle, int] = {}

    # ---------------------------------------------------------------- helpers

    def _path(self, inode: int) -> bytes:
        path = self._paths.path(inode)
        if path is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return path

    def _child(self, parent_inode: int, name: bytes) -> bytes:
        return os.path.join(self._path(parent_inode), name)

    def _fuse_ino(self, backing_ino: int) -> int:
        return pyfuse3.ROOT_INODE if backing_ino == self._root_backing_ino else backing_ino

    def _attrs(self, st: os.stat_result) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = self._fuse_ino(st.st_ino)
        attrs.generation = 0
        attrs.entry_timeout = self._timeouts.entry_s
        attrs.attr_timeout = self._timeouts.attr_s
        attrs.st_mode = st.st_mode
        attrs.st_nlink = st.st_nlink
        attrs.st_uid = st.st_uid
        attrs.st_gid = st.st_gid
        attrs.st_rdev = st.st_rdev
        attrs.st_size = st.st_size
        attrs.st_blksize = st.st_blksize
        attrs.st_blocks = st.st_blocks
        attrs.st_atime_ns = st.st_atime_ns
        attrs.st_mtime_ns = st.st_mtime_ns
        attrs.st_ctime_ns = st.st_ctime_ns
        return attrs

    def _remember(self, path: bytes, st: os.stat_result) -> pyfuse3.EntryAttributes:
        """An entry handed to the kernel: one more lookup reference to its inode."""
        attrs = self._attrs(st)
        self._paths.add(attrs.st_ino, path)
        self._lookups[attrs.st_ino] = self._lookups.get(attrs.st_ino, 0) + 1
        return attrs

    def _own(self, path: bytes, ctx: pyfuse3.RequestContext) -> None:
        """New entries belong to the caller, as on a local file system."""
        if (ctx.uid, ctx.gid) != (os.geteuid(), os.getegid()):
            os.lchown(path, ctx.uid, ctx.gid)

    # ------------------------------------------------------------ namespace

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with errno_reply():
            path = os.path.normpath(self._child(parent_inode, name))
            if not path.startswith(self._paths.root_path):
                path = self._paths.root_path  # ".." of the root stays at the root
            return self._remember(path, os.lstat(path))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            left = self._lookups.get(inode, 0) - count
            if left > 0:
                self._lookups[inode] = left
            else:
                self._lookups.pop(inode, None)
                self._paths.forget(inode)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._paths.path(inode)
        with errno_reply():
            try:
                if path is None:
                    raise FileNotFoundError(errno.ENOENT, "no path left")
                return self._attrs(os.lstat(path))
            except FileNotFoundError:
                fd = next((fd for fd, ino in self._open_inode.items() if ino == inode), None)
                if fd is None:
                    raise
                return self._attrs(os.fstat(fd))

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandle | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        with errno_reply():
            if fields.update_size:
                os.truncate(fh if fh is not None else path, attr.st_size)
            if fields.update_mode:
                os.chmod(path, stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                uid = attr.st_uid if fields.update_uid else -1
                gid = attr.st_gid if fields.update_gid else -1
                os.chown(path, uid, gid, follow_symlinks=False)
            if fields.update_atime or fields.update_mtime:
                current = os.lstat(path)
                atime = attr.st_atime_ns if fields.update_atime else current.st_atime_ns
                mtime = attr.st_mtime_ns if fields.update_mtime else current.st_mtime_ns
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)
            return self._attrs(os.lstat(path))

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with errno_reply():
            return os.readlink(self._path(inode))

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        with errno_reply():
            os.mkdir(path, mode)
            self._own(path, ctx)
            return self._remember(path, os.lstat(path))

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        with errno_reply():
            os.symlink(target, path)
            self._own(path, ctx)
            return self._remember(path, os.lstat(path))

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(new_parent_inode, new_name)
        with errno_reply():
            os.link(self._path(inode), path, follow_symlinks=False)
            return self._remember(path, os.lstat(path))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        with errno_reply():
            os.unlink(path)
        self._paths.remove_path(path)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        with errno_reply():
            os.rmdir(path)
        self._paths.remove_path(path)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)  # os.rename cannot swap atomically
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        with errno_reply():
            if flags & pyfuse3.RENAME_NOREPLACE and os.path.lexists(new):
                raise FileExistsError(errno.EEXIST, "target exists")
            os.rename(old, new)
            is_dir = stat.S_ISDIR(os.lstat(new).st_mode)
        self._paths.move(old, new, is_dir)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        with errno_reply():
            st = os.statvfs(self._paths.root_path)
        data = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                     "f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(data, name, getattr(st, name))
        return data

    # ---------------------------------------------------------- directories

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> FileHandle:
        with errno_reply():
            names = sorted(os.listdir(self._path(inode)))
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._listings[fh] = names
        self._dir_inode[fh] = inode
        return fh

    async def readdir(self, fh: FileHandle, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        directory = self._path(self._dir_inode[fh])
        names = self._listings[fh]
        # start_id is the index of the next name to send; offsets are stable
        # because the listing was fixed at opendir.
        for index in range(start_id, len(names)):
            path = os.path.join(directory, names[index])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed since opendir
            if not pyfuse3.readdir_reply(token, names[index], self._attrs(st), index + 1):
                return
            self._remember(path, st)

    async def releasedir(self, fh: FileHandle) -> None:
        self._listings.pop(fh, None)
        self._dir_inode.pop(fh, None)

    async def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        with errno_reply():
            fd = os.open(self._path(self._dir_inode[fh]), os.O_RDONLY | os.O_DIRECTORY)
            try:
                await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)

    # ---------------------------------------------------------------- files

    def _file_info(self, fd: int, flags: int) -> pyfuse3.FileInfo:
        # O_DIRECT bypasses the kernel's page cache for this handle, as on dfs.
        direct = bool(flags & os.O_DIRECT)
        return pyfuse3.FileInfo(fh=fd, direct_io=direct, keep_cache=self._keep_cache and not direct)

    def _backing_flags(self, flags: int) -> int:
        # The backing file is opened without O_DIRECT: Python's buffers are not
        # aligned as O_DIRECT needs, and the kernel already skips its cache above.
        flags &= ~os.O_DIRECT
        if not self.enable_writeback_cache:
            return flags
        # With the kernel's write-back cache, the kernel also reads through a
        # write-only open and handles O_APPEND itself.
        if flags & os.O_ACCMODE == os.O_WRONLY:
            flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
        return flags & ~os.O_APPEND

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with errno_reply():
            fd = os.open(self._path(inode), self._backing_flags(flags) & ~os.O_CREAT)
        self._open_inode[fd] = inode
        return self._file_info(fd, flags)

    async def create(
        self,
        parent_inode: int,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._child(parent_inode, name)
        with errno_reply():
            fd = os.open(path, self._backing_flags(flags) | os.O_CREAT, mode)
            try:
                self._own(path, ctx)
                attrs = self._remember(path, os.fstat(fd))
            except OSError:
                os.close(fd)
                raise
        self._open_inode[fd] = attrs.st_ino
        return self._file_info(fd, flags), attrs

    async def read(self, fh: FileHandle, off: int, size: int) -> bytes:
        with errno_reply():
            return os.pread(fh, size, off)

    async def write(self, fh: FileHandle, off: int, buf: bytes) -> int:
        with errno_reply():
            return os.pwrite(fh, buf, off)

    async def flush(self, fh: FileHandle) -> None:
        # Writes went to the backing file as they came; there is nothing to flush.
        return None

    async def release(self, fh: FileHandle) -> None:
        self._open_inode.pop(fh, None)
        with errno_reply():
            os.close(fh)

    async def fsync(self, fh: FileHandle, datasync: bool) -> None:
        # In a thread: an fsync must not stall the requests of other processes.
        with errno_reply():
            await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, fh)
