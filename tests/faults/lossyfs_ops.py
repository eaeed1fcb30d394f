"""The lossy storage layer's file system: the benchmark's pyfuse3 passthrough, plus a
record of what is not durable yet, so a simulated power loss can drop it.

Every request still reaches the backing directory at once (reads need no merging);
what is kept is how to undo it:

- a file's bytes and size are durable once the file is fsynced (fsync or fdatasync);
  until then the layer keeps the size at the first unsynced change and the old bytes
  of every overwritten range, and a power loss puts them back;
- a name added to or removed from a directory (create, mkdir, symlink, link, unlink,
  rmdir, either side of a rename) is durable once that directory is fsynced; until
  then a power loss takes an added name away and brings a removed one back (a removed
  file is kept alive by a hard link in the trash directory, outside the mounted tree).

fsync itself only moves the line (the backing file system never loses power), so the
layer is faster than the passthrough it extends. "Disk full" makes every request that
needs new space fail with ENOSPC until it is turned off.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3

# The passthrough lives with the benchmarks, which run it as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

from passthrough_ops import CacheTimeouts, FileHandle, Passthrough, errno_reply

log = logging.getLogger(__name__)

# The kernel must ask again after every change behind its back (a power loss): no
# cached names, attributes or pages.
NO_CACHING = CacheTimeouts(entry_s=0.0, attr_s=0.0)


@dataclass
class DirtyFile:
    """One file with bytes not yet fsynced: how to put back its last durable state."""

    fd: int  # our own read-write descriptor: the writer's may close, or be write-only
    durable_size: int
    old_bytes: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, bytes)

    def before_change(self, offset: int, length: int) -> None:
        """Keep the durable bytes that [offset, offset + length) is about to replace."""
        end = min(offset + length, self.durable_size)
        if offset < end:
            self.old_bytes.append((offset, os.pread(self.fd, end - offset, offset)))

    def restore(self) -> None:
        for offset, data in reversed(self.old_bytes):  # oldest last: it wins
            os.pwrite(self.fd, data, offset)
        os.ftruncate(self.fd, self.durable_size)


@dataclass
class NameChange:
    """One name added or removed, durable once every directory in `dirs` is fsynced."""

    what: str
    dirs: set[int]  # FUSE inode numbers of the directories it changed
    undo: Callable[[], None]
    commit: Callable[[], None] | None = None  # once durable (drops a trash copy)


class LossyOps(Passthrough):
    """The passthrough over `root`, dropping what was not fsynced on power_loss()."""

    def __init__(self, root: bytes, trash: bytes) -> None:
        super().__init__(root, NO_CACHING, writeback_cache=False, keep_cache=False)
        self.full = False
        self._trash = trash
        self._trash_names = itertools.count()
        self._dirty: dict[int, DirtyFile] = {}  # FUSE inode -> its last durable state
        self._changes: list[NameChange] = []  # oldest first

    # ------------------------------------------------------------ the switch

    def power_loss(self) -> str:
        """Forget everything not durable, as a power cut would."""
        files, names = len(self._dirty), len(self._changes)
        for dirty in self._dirty.values():
            with errno_reply():
                dirty.restore()
            os.close(dirty.fd)
        self._dirty.clear()
        for change in reversed(self._changes):
            try:
                change.undo()
            except OSError as err:  # a later durable change took its place
                log.warning("power loss: cannot undo %s: %s", change.what, err)
        self._changes.clear()
        self._forget_stale_paths()
        log.info("power loss: %d files back to their fsynced state, %d name changes undone",
                 files, names)
        return f"files={files} names={names}"

    def sync(self) -> str:
        """Everything durable, as sync(1) would make it."""
        files, names = len(self._dirty), len(self._changes)
        for inode in list(self._dirty):
            self._file_synced(inode)
        self._commit(lambda change: True)
        return f"files={files} names={names}"

    def status(self) -> str:
        return f"files={len(self._dirty)} names={len(self._changes)} full={int(self.full)}"

    # ------------------------------------------------------------ bookkeeping

    def _dirty_file(self, inode: int, reopen: str | bytes) -> DirtyFile:
        dirty = self._dirty.get(inode)
        if dirty is None:
            fd = os.open(reopen, os.O_RDWR)
            dirty = self._dirty[inode] = DirtyFile(fd, os.fstat(fd).st_size)
        return dirty

    def _file_synced(self, inode: int) -> None:
        dirty = self._dirty.pop(inode, None)
        if dirty is not None:
            os.close(dirty.fd)

    def _commit(self, durable: Callable[[NameChange], bool]) -> None:
        kept = []
        for change in self._changes:
            if durable(change):
                if change.commit is not None:
                    change.commit()
            else:
                kept.append(change)
        self._changes = kept

    def _keep_in_trash(self, path: bytes) -> bytes:
        """A hard link that keeps the file at `path` alive after it is unlinked."""
        kept = os.path.join(self._trash, str(next(self._trash_names)).encode())
        os.link(path, kept, follow_symlinks=False)
        return kept

    def _added(self, parent: int, path: bytes) -> None:
        inode = os.lstat(path).st_ino

        def undo() -> None:
            if os.lstat(path).st_ino != inode:
                return  # replaced since by a change that is durable
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)

        self._changes.append(NameChange(f"add {path!r}", {parent}, undo))

    def _removed_file(self, parent: int, path: bytes, kept: bytes) -> None:
        def undo() -> None:
            os.link(kept, path, follow_symlinks=False)  # EEXIST: something durable took it
            os.unlink(kept)

        self._changes.append(
            NameChange(f"remove {path!r}", {parent}, undo, commit=lambda: os.unlink(kept)))

    def _removed_dir(self, parent: int, path: bytes, mode: int) -> None:
        self._changes.append(
            NameChange(f"rmdir {path!r}", {parent}, lambda: os.mkdir(path, mode)))

    def _forget_stale_paths(self) -> None:
        """After a power loss the path table may name things that are gone or moved."""
        for path, inode in self._paths.known_paths():
            try:
                if self._fuse_ino(os.lstat(path).st_ino) == inode:
                    continue
            except FileNotFoundError:
                pass
            self._paths.remove_path(path)

    def _need_space(self) -> None:
        if self.full:
            raise pyfuse3.FUSEError(errno.ENOSPC)

    # ---------------------------------------------------------------- files

    async def write(self, fh: FileHandle, off: int, buf: bytes) -> int:
        self._need_space()
        with errno_reply():
            dirty = self._dirty_file(self._open_inode[fh], f"/proc/self/fd/{fh}")
            dirty.before_change(off, len(buf))
        return await super().write(fh, off, buf)

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandle | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if fields.update_size:
            with errno_reply():
                reopen = f"/proc/self/fd/{fh}" if fh is not None else self._path(inode)
                dirty = self._dirty_file(inode, reopen)
                dirty.before_change(attr.st_size, max(0, dirty.durable_size - attr.st_size))
        return await super().setattr(inode, attr, fields, fh, ctx)

    async def fsync(self, fh: FileHandle, datasync: bool) -> None:
        self._file_synced(self._open_inode[fh])

    async def fsyncdir(self, fh: FileHandle, datasync: bool) -> None:
        directory = self._dir_inode[fh]
        for change in self._changes:
            change.dirs.discard(directory)
        self._commit(lambda change: not change.dirs)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = await super().statfs(ctx)
        if self.full:
            data.f_bfree = data.f_bavail = 0
        return data

    # ------------------------------------------------------------ namespace

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._need_space()
        path = self._child(parent_inode, name)
        existed = os.path.lexists(path)
        reply = await super().create(parent_inode, name, mode, flags, ctx)
        if not existed:
            self._added(parent_inode, path)
        return reply

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._need_space()
        reply = await super().mkdir(parent_inode, name, mode, ctx)
        self._added(parent_inode, self._child(parent_inode, name))
        return reply

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._need_space()
        reply = await super().symlink(parent_inode, name, target, ctx)
        self._added(parent_inode, self._child(parent_inode, name))
        return reply

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._need_space()
        reply = await super().link(inode, new_parent_inode, new_name, ctx)
        self._added(new_parent_inode, self._child(new_parent_inode, new_name))
        return reply

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        with errno_reply():
            kept = self._keep_in_trash(path)
        try:
            await super().unlink(parent_inode, name, ctx)
        except pyfuse3.FUSEError:
            os.unlink(kept)
            raise
        self._removed_file(parent_inode, path, kept)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        with errno_reply():
            mode = stat.S_IMODE(os.lstat(path).st_mode)
        await super().rmdir(parent_inode, name, ctx)
        self._removed_dir(parent_inode, path, mode)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        with errno_reply():
            moved = os.lstat(old)
            try:
                replaced: os.stat_result | None = os.lstat(new)
            except FileNotFoundError:
                replaced = None
            if stat.S_ISDIR(moved.st_mode):
                await super().rename(parent_inode_old, name_old, parent_inode_new, name_new,
                                     flags, ctx)
                self._renamed_dir(parent_inode_old, old, parent_inode_new, new, replaced)
                return
            kept_old = self._keep_in_trash(old)
            kept_new = None
            if replaced is not None and not stat.S_ISDIR(replaced.st_mode):
                kept_new = self._keep_in_trash(new)
        try:
            await super().rename(parent_inode_old, name_old, parent_inode_new, name_new,
                                 flags, ctx)
        except pyfuse3.FUSEError:
            for kept in (kept_old, kept_new):
                if kept is not None:
                    os.unlink(kept)
            raise
        # Undone newest first: the new name goes, the replaced file and the old name return.
        if kept_new is not None:
            self._removed_file(parent_inode_new, new, kept_new)
        self._removed_file(parent_inode_old, old, kept_old)
        self._added(parent_inode_new, new)

    def _renamed_dir(self, parent_old: int, old: bytes, parent_new: int, new: bytes,
                     replaced: os.stat_result | None) -> None:
        """A directory cannot be kept by a hard link: its rename is one change, undone
        by renaming it back, durable once both parents are fsynced."""
        def undo() -> None:
            os.rename(new, old)
            if replaced is not None:
                os.mkdir(new, stat.S_IMODE(replaced.st_mode))

        self._changes.append(NameChange(f"rename {old!r} -> {new!r}", {parent_old, parent_new},
                                        undo))
