"""A mounted file system's client-side policy: open handles, write buffers, reads.

Owns what a mount decides about file data: writes are buffered per open file
and committed as chunks on flush/fsync/release or when the buffer fills (close's
durability completes in flush); reads use the block maps fetched at open
(close-to-open consistency) and see the handle's own committed writes; the size
seen by getattr includes buffered writes. Namespace calls pass straight through
to the metadata client. Runs on the asyncio side of the bridge; never trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import count

from dfs.client.data import BlockMaps, FileData
from dfs.client.meta import MetaClient
from dfs.rpc import common_pb2, meta_pb2

log = logging.getLogger(__name__)

# Bytes buffered per open file before they are written out, whatever the caller does.
WRITE_BUFFER_BYTES = 16 << 20
MAX_FILE_SIZE = (1 << 63) - 1
O_ACCMODE = 0o3
OPEN_VIEW_TRIES = 5
O_WRONLY = 0o1
O_TRUNC = 0o1000
O_APPEND = 0o2000
S_ISUID = 0o4000
S_ISGID = 0o2000
# A time this close to the client's clock came from UTIME_NOW: pyfuse3 hands a
# file system "now" as a value, and "now" needs only write permission where a
# value needs ownership.
UTIME_NOW_WINDOW_NS = 2_000_000_000


@dataclass
class Extent:
    """Buffered bytes [offset, offset + len(data)); a handle's extents are sorted and
    disjoint, so a flush writes each byte once."""

    offset: int
    data: bytearray

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def merge_into(extents: list[Extent], offset: int, data: bytes) -> int:
    """Lays `data` over `extents` (sorted, disjoint, never touching), merging every
    extent it overlaps or touches into one, later bytes winning; returns how many
    buffered bytes that added. Appends and rewrites inside one extent work in place,
    so a sequential writer's buffer grows without copies."""
    if not data:
        return 0
    end = offset + len(data)
    lo = bisect_left(extents, offset, key=lambda e: e.end)  # first touching from the left
    hi = bisect_right(extents, end, key=lambda e: e.offset)  # past the last touching one
    if lo == hi:
        extents.insert(lo, Extent(offset, bytearray(data)))
        return len(data)
    first, last = extents[lo], extents[hi - 1]
    if lo + 1 == hi and first.offset <= offset and end <= first.end:
        start = offset - first.offset
        first.data[start : start + len(data)] = data
        return 0
    before = sum(len(e.data) for e in extents[lo:hi])
    tail = last.data[end - last.offset :] if last.end > end else b""
    if first.offset <= offset:
        merged = first.data
        del merged[offset - first.offset :]
    else:
        merged = bytearray()
    merged += data
    merged += tail
    extents[lo:hi] = [Extent(min(first.offset, offset), merged)]
    return len(merged) - before


@dataclass
class Handle:
    fh: int
    ino: int
    caller: common_pb2.Caller
    flags: int
    block_size: int
    maps: BlockMaps | None
    extents: list[Extent] = field(default_factory=list)
    buffered: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failure: OSError | None = None  # a background write error, reported at the next call

    def buffered_end(self) -> int:
        return max((e.end for e in self.extents), default=0)


class FsClient:
    """Everything a mount does to the cluster, one instance per mount."""

    def __init__(self, meta: MetaClient, data: FileData) -> None:
        self.meta = meta
        self.data = data
        self.handles: dict[int, Handle] = {}
        self._fh_numbers = count(1)
        # Size a getattr must report while writes sit in buffers, per inode.
        self._pending_size: dict[int, int] = {}

    # ---- attributes ------------------------------------------------------------

    def merge_pending(self, attr: common_pb2.Attr) -> common_pb2.Attr:
        pending = self._pending_size.get(attr.ino)
        if pending is not None and pending > attr.size:
            merged = common_pb2.Attr()
            merged.CopyFrom(attr)
            merged.size = pending
            return merged
        return attr

    async def getattr(self, caller: common_pb2.Caller, ino: int) -> common_pb2.Attr:
        return self.merge_pending(await self.meta.getattr(caller, ino))

    async def lookup(self, caller: common_pb2.Caller, parent: int, name: bytes) -> common_pb2.Attr:
        return self.merge_pending(await self.meta.lookup(caller, parent, name))

    # ---- open files ------------------------------------------------------------

    async def open(
        self, caller: common_pb2.Caller, ino: int, flags: int
    ) -> tuple[Handle, common_pb2.Attr]:
        opened = await self.meta.open_file(caller, ino, flags)
        attr = opened.attr
        if flags & O_TRUNC and attr.size:
            attr = await self.meta.setattr(meta_pb2.SetAttrRequest(caller=caller, ino=ino, size=0))
        handle = Handle(
            next(self._fh_numbers), ino, caller, flags, opened.block_size or 4 << 20, None
        )
        if flags & O_ACCMODE != O_WRONLY:
            # Close-to-open: the handle reads one version of the file, the one whose
            # attributes it returns (the kernel keeps or drops its cache by them).
            attr, handle.maps = await self._consistent_view(handle, attr)
        self.handles[handle.fh] = handle
        self.meta.hold(ino)
        return handle, attr

    async def _consistent_view(
        self, handle: Handle, attr: common_pb2.Attr
    ) -> tuple[common_pb2.Attr, BlockMaps]:
        """Block maps and the attributes of the same version: a commit between the two
        linearizable reads changes mtime, so read again until mtime holds still."""
        maps = await self._whole_file_maps(handle)
        for _ in range(OPEN_VIEW_TRIES):
            again = await self.meta.getattr(handle.caller, handle.ino)
            if again.mtime_ns == attr.mtime_ns and again.size == maps.size:
                return again, maps
            attr = again
            maps = await self._whole_file_maps(handle)
        return attr, maps

    async def create(
        self, caller: common_pb2.Caller, parent: int, name: bytes, mode: int, flags: int
    ) -> tuple[Handle, common_pb2.Attr]:
        attr = await self.meta.create(caller, parent, name, mode, exclusive=True)
        handle = Handle(
            next(self._fh_numbers),
            attr.ino,
            caller,
            flags,
            attr.blksize or 4 << 20,
            BlockMaps(0, {}),
        )
        self.handles[handle.fh] = handle
        self.meta.hold(attr.ino)
        return handle, attr

    def handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise OSError(errno.EBADF, "no such open file")
        return handle

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.handle(fh)
        if offset + len(data) > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "write past the maximum file size")
        async with handle.lock:
            self._raise_failure(handle)
            self._buffer(handle, offset, data)
            self._pending_size[handle.ino] = max(
                self._pending_size.get(handle.ino, 0), offset + len(data)
            )
            if handle.buffered >= WRITE_BUFFER_BYTES:
                await self._flush_locked(handle)
        return len(data)

    def _buffer(self, handle: Handle, offset: int, data: bytes) -> None:
        handle.buffered += merge_into(handle.extents, offset, data)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.handle(fh)
        async with handle.lock:
            self._raise_failure(handle)
            if handle.extents:
                # Reads see this handle's writes: commit them first.
                await self._flush_locked(handle)
            if handle.maps is None:
                handle.maps = await self._whole_file_maps(handle)
            maps = handle.maps
        return await self.data.read(
            handle.caller, handle.ino, offset, size, handle.block_size, maps
        )

    async def _whole_file_maps(self, handle: Handle) -> BlockMaps:
        """Every block map of the file (count 0 = to the end), as of now."""
        maps, size = await self.meta.get_block_map(handle.caller, handle.ino, 0, 0)
        return BlockMaps(size, {block_map.block: block_map for block_map in maps})

    async def flush(self, fh: int) -> None:
        handle = self.handle(fh)
        async with handle.lock:
            await self._flush_locked(handle)
            self._raise_failure(handle)

    async def fsync(self, fh: int) -> None:
        await self.flush(fh)

    async def release(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if handle is None:
            return
        try:
            async with handle.lock:
                await self._flush_locked(handle)
        finally:
            del self.handles[fh]
            self.meta.release(handle.ino)
            if not any(h.ino == handle.ino for h in self.handles.values()):
                self._pending_size.pop(handle.ino, None)

    async def _flush_locked(self, handle: Handle) -> None:
        """Commit every buffered extent at once: one chunk per block touched on R
        replicas, then one slice commit. On failure the extents stay buffered (a later
        flush writes them again) and the error waits in handle.failure."""
        if not handle.extents:
            return
        extents = [(extent.offset, bytes(extent.data)) for extent in handle.extents]
        try:
            await self.data.write_extents(handle.caller, handle.ino, extents, handle.block_size)
        except OSError as err:
            log.warning("write-back of inode %d failed: %s", handle.ino, err)
            handle.failure = err
            raise
        handle.extents.clear()
        handle.buffered = 0
        handle.maps = None  # our own commit changed the block maps

    def _raise_failure(self, handle: Handle) -> None:
        if handle.failure is not None:
            failure, handle.failure = handle.failure, None
            raise OSError(failure.errno or errno.EIO, f"earlier write failed: {failure}")

    async def setattr(self, request: meta_pb2.SetAttrRequest) -> common_pb2.Attr:
        """chmod/chown/utimens. Two requests the kernel makes that a file system
        behind pyfuse3 cannot tell apart from their strict forms are retried when
        refused: times that are "now" (a writer may set them) and the kernel's
        clearing of setuid/setgid bits after a write by someone else."""
        try:
            return await self.meta.setattr(request)
        except OSError as err:
            if err.errno != errno.EPERM:
                raise
            retry = self._as_touch(request) or await self._as_kill_privileges(request)
            if retry is None:
                raise
        return await self.meta.setattr(retry)

    def _as_touch(self, request: meta_pb2.SetAttrRequest) -> meta_pb2.SetAttrRequest | None:
        """`request` with times near the clock as TIME_SET_NOW, if it sets only times."""
        if any(request.HasField(name) for name in ("mode", "uid", "gid", "size")):
            return None
        now = time.time_ns()
        near = [
            (kind, abs(value - now) <= UTIME_NOW_WINDOW_NS)
            for kind, value in ((request.atime_set, request.atime_ns),
                                (request.mtime_set, request.mtime_ns))
            if kind == meta_pb2.TIME_SET_VALUE
        ]
        if not near or not all(is_near for _, is_near in near):
            return None
        touch = meta_pb2.SetAttrRequest()
        touch.CopyFrom(request)
        if touch.atime_set == meta_pb2.TIME_SET_VALUE:
            touch.atime_set, touch.atime_ns = meta_pb2.TIME_SET_NOW, 0
        if touch.mtime_set == meta_pb2.TIME_SET_VALUE:
            touch.mtime_set, touch.mtime_ns = meta_pb2.TIME_SET_NOW, 0
        return touch

    async def _as_kill_privileges(
        self, request: meta_pb2.SetAttrRequest
    ) -> meta_pb2.SetAttrRequest | None:
        """A chmod that only clears setuid/setgid bits (what the kernel sends after a
        write or truncate by someone other than the owner), done with root's authority:
        dropping those bits is never a privilege gain."""
        if not request.HasField("mode") or any(
            request.HasField(name) for name in ("uid", "gid", "size")
        ):
            return None
        current = await self.meta.getattr(request.caller, request.ino)
        privileges = S_ISUID | S_ISGID
        only_clears = (
            request.mode & ~privileges == current.mode & ~privileges
            and request.mode & ~current.mode == 0
            and request.mode != current.mode
        )
        if not only_clears:
            return None
        kill = meta_pb2.SetAttrRequest(ino=request.ino, mode=request.mode)
        kill.caller.CopyFrom(common_pb2.Caller(uid=0, gid=0, pid=request.caller.pid))
        return kill

    async def truncate(self, caller: common_pb2.Caller, ino: int, size: int) -> common_pb2.Attr:
        """Buffered writes of this inode land first, so the truncate cuts them too."""
        for handle in [h for h in self.handles.values() if h.ino == ino]:
            async with handle.lock:
                await self._flush_locked(handle)
                handle.maps = None
        self._pending_size.pop(ino, None)
        return await self.meta.setattr(meta_pb2.SetAttrRequest(caller=caller, ino=ino, size=size))

    async def flush_all(self) -> None:
        for fh in list(self.handles):
            handle = self.handles.get(fh)
            if handle is not None:
                async with handle.lock:
                    with contextlib.suppress(OSError):  # logged in _flush_locked
                        await self._flush_locked(handle)
