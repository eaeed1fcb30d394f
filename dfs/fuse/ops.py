"""pyfuse3 Operations for dfs: translate each kernel request into a dfs/client call.

Every handler runs on trio and awaits its call on the gRPC loop thread through
the bridge (no thread per call); every request has a deadline after which it
fails with EIO and the mount stays usable. Errors become errno values; nothing
here decides caching or buffering.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pyfuse3
import trio

from dfs.client.bridge import AsyncioBridge
from dfs.client.fs import FsClient
from dfs.client.retry import LeaderUnavailable
from dfs.fuse.kernel_view import KernelView
from dfs.fuse.translate import (
    caller_of,
    entry_attributes,
    kind_of_mode,
    negative_entry,
    squash_root,
)
from dfs.rpc import common_pb2, meta_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")
READDIR_PAGE = 512


@dataclass(frozen=True)
class MountOptions:
    """What the kernel may cache and for how long, and the per-request deadline."""

    attr_timeout_s: float = 1.0  # attributes of a known inode
    entry_timeout_s: float = 1.0  # a name -> inode lookup
    negative_timeout_s: float = 1.0  # "no such name" (0: not cached)
    request_deadline_s: float = 60.0
    root_squash: bool = False  # requests of uid 0 are made as nobody (like NFS)


@dataclass
class DirHandle:
    ino: int
    caller: common_pb2.Caller


class DfsOperations(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, fs: FsClient, bridge: AsyncioBridge, options: MountOptions) -> None:
        super().__init__()
        self.fs = fs
        self.bridge = bridge
        self.options = options
        self.kernel_view = KernelView()
        self._dirs: dict[int, DirHandle] = {}
        self._next_dir = 1

    # ---- plumbing ----------------------------------------------------------------

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a client call with the request deadline; errors become FUSEError."""
        try:
            with trio.fail_after(self.options.request_deadline_s):
                return await self.bridge.call(make)
        except OSError as err:
            raise pyfuse3.FUSEError(err.errno or errno.EIO) from None
        except trio.TooSlowError:
            log.warning("request past its %.0f s deadline", self.options.request_deadline_s)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except (LeaderUnavailable, grpc.RpcError) as err:
            log.warning("metadata unavailable: %s", err)
            raise pyfuse3.FUSEError(errno.EIO) from None

    def entry(self, attr: common_pb2.Attr) -> pyfuse3.EntryAttributes:
        """What the kernel is told about an inode: always with the size buffered
        writes give it (readdir's attributes too, or the kernel would shrink the file)."""
        attr = self.fs.merge_pending(attr)
        self.kernel_view.told(attr)
        return entry_attributes(attr, self.options.attr_timeout_s, self.options.entry_timeout_s)

    def caller(self, ctx: pyfuse3.RequestContext) -> common_pb2.Caller:
        caller = caller_of(ctx)
        return squash_root(caller) if self.options.root_squash else caller

    # ---- names and attributes -------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> Any:
        caller = self.caller(ctx)
        try:
            attr = await self.call(lambda: self.fs.lookup(caller, parent_inode, name))
        except pyfuse3.FUSEError as err:
            if err.errno != errno.ENOENT or not self.options.negative_timeout_s:
                raise
            # Inode 0: the kernel caches "no such name" for the negative timeout; its
            # own creates and renames in this mount replace the entry at once.
            return negative_entry(self.options.negative_timeout_s)
        return self.entry(attr)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Any:
        caller = self.caller(ctx)
        return self.entry(await self.call(lambda: self.fs.getattr(caller, inode)))

    async def setattr(
        self, inode: int, attr: Any, fields: Any, fh: int | None, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller = self.caller(ctx)
        result: common_pb2.Attr | None = None
        if fields.update_size:
            size = attr.st_size
            result = await self.call(lambda: self.fs.truncate(caller, inode, size))
        request = meta_pb2.SetAttrRequest(caller=caller, ino=inode)
        changed = False
        if fields.update_mode:
            request.mode, changed = attr.st_mode & 0o7777, True
        if fields.update_uid:
            request.uid, changed = attr.st_uid, True
        if fields.update_gid:
            request.gid, changed = attr.st_gid, True
        if fields.update_atime:
            request.atime_set, request.atime_ns, changed = (
                meta_pb2.TIME_SET_VALUE, attr.st_atime_ns, True)
        if fields.update_mtime:
            request.mtime_set, request.mtime_ns, changed = (
                meta_pb2.TIME_SET_VALUE, attr.st_mtime_ns, True)
        if changed:
            result = await self.call(lambda: self.fs.setattr(request))
        if result is None:
            result = await self.call(lambda: self.fs.getattr(caller, inode))
        return self.entry(result)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        caller = self.caller(ctx)
        return await self.call(lambda: self.fs.meta.readlink(caller, inode))

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller, kind = self.caller(ctx), kind_of_mode(mode)
        if not kind:
            raise pyfuse3.FUSEError(errno.EINVAL)
        perm = mode & 0o7777 & ~ctx.umask
        return self.entry(await self.call(lambda: self.fs.meta.make_node(
            caller, parent_inode, name, kind, perm, rdev=rdev)))

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller, perm = self.caller(ctx), mode & 0o7777 & ~ctx.umask
        return self.entry(await self.call(lambda: self.fs.meta.mkdir(
            caller, parent_inode, name, perm)))

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller = self.caller(ctx)
        return self.entry(await self.call(lambda: self.fs.meta.symlink(
            caller, parent_inode, name, target)))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.unlink(caller, parent_inode, name))

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.rmdir(caller, parent_inode, name))

    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: pyfuse3.RequestContext,
    ) -> None:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.rename(
            caller, parent_inode_old, name_old, parent_inode_new, name_new, flags))

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller = self.caller(ctx)
        return self.entry(await self.call(lambda: self.fs.meta.link(
            caller, inode, new_parent_inode, new_name)))

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        caller = self.caller(ctx)
        try:
            await self.call(lambda: self.fs.meta.access(caller, inode, mode))
        except pyfuse3.FUSEError as err:
            if err.errno == errno.EACCES:
                return False
            raise
        return True

    async def statfs(self, ctx: pyfuse3.RequestContext) -> Any:
        caller = self.caller(ctx)
        reply = await self.call(lambda: self.fs.meta.statfs(caller))
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = reply.bsize or 4096
        data.f_blocks, data.f_bfree, data.f_bavail = reply.blocks, reply.bfree, reply.bavail
        data.f_files, data.f_ffree, data.f_favail = reply.files, reply.ffree, reply.ffree
        data.f_namemax = reply.namemax or 255
        return data

    # ---- extended attributes --------------------------------------------------------

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.setxattr(caller, inode, name, value))

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        caller = self.caller(ctx)
        return await self.call(lambda: self.fs.meta.getxattr(caller, inode, name))

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Any:
        caller = self.caller(ctx)
        return await self.call(lambda: self.fs.meta.listxattr(caller, inode))

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.removexattr(caller, inode, name))

    # ---- files ------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> Any:
        caller = self.caller(ctx)
        handle, attr = await self.call(lambda: self.fs.open(caller, inode, flags))
        # Close-to-open: a file changed elsewhere since the kernel cached it gets its
        # attributes refetched and its cached pages dropped. (Safe to notify from a
        # handler: without writeback caching the kernel takes no lock for it.)
        stale = self.kernel_view.stale(self.fs.merge_pending(attr))
        if stale:
            with contextlib.suppress(OSError):
                pyfuse3.invalidate_inode(inode, attr_only=True)
        # O_DIRECT bypasses the kernel's page cache for this handle.
        return pyfuse3.FileInfo(
            fh=handle.fh, direct_io=bool(flags & os.O_DIRECT), keep_cache=not stale)

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> Any:
        caller, perm = self.caller(ctx), mode & 0o7777 & ~ctx.umask
        handle, attr = await self.call(lambda: self.fs.create(
            caller, parent_inode, name, perm, flags))
        return pyfuse3.FileInfo(fh=handle.fh, direct_io=bool(flags & os.O_DIRECT)), self.entry(
            attr)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.call(lambda: self.fs.read(fh, off, size))

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.call(lambda: self.fs.write(fh, off, buf))

    async def flush(self, fh: int) -> None:
        await self.call(lambda: self.fs.flush(fh))

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.call(lambda: self.fs.fsync(fh))

    async def release(self, fh: int) -> None:
        await self.call(lambda: self.fs.release(fh))

    # ---- directories ------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        caller = self.caller(ctx)
        await self.call(lambda: self.fs.meta.access(caller, inode, os.R_OK))
        fh = self._next_dir
        self._next_dir += 1
        self._dirs[fh] = DirHandle(inode, caller)
        return fh

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        """Entries after cookie `start_id`; dfs cookies are stable, so a listing
        resumes correctly while entries come and go."""
        handle = self._dirs.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        cookie = start_id
        while True:
            page = await self.call(lambda c=cookie: self.fs.meta.readdir(  # type: ignore[misc]
                handle.caller, handle.ino, cookie=c, limit=READDIR_PAGE, with_attrs=True))
            for entry in page.entries:
                if not pyfuse3.readdir_reply(token, entry.name, self.entry(entry.attr),
                                             entry.cookie):
                    return
                cookie = entry.cookie
            if page.eof or not page.entries:
                return

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """Every namespace change is durable once acknowledged: nothing to do."""

    async def forget(self, inode_list: Any) -> None:
        """dfs keeps no per-inode lookup state on the client, only what the kernel
        was told about it."""
        for inode, _ in inode_list:
            self.kernel_view.forget(inode)
