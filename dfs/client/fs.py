"""A mounted file system's client-side policy: open files, write buffers, reads.

Owns what a mount decides about file data. Every open file (inode) has one state
shared by all of its handles in this mount: the block maps fetched at open
(close-to-open consistency) and one write-back (writeback.py: buffered, uploaded in
the background, committed on flush/fsync/release; close's durability completes in
flush), so every handle reads what any handle wrote, before it is committed. Reads
go through the chunk cache with read-ahead, except on O_DIRECT handles. The size
seen by getattr includes buffered writes. Namespace calls
pass straight through to the metadata client. Runs on the asyncio side of the
bridge; never trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from dataclasses import dataclass, field
from itertools import count

from dfs.client.data import BlockMaps, FileData
from dfs.client.meta import MetaClient
from dfs.client.tuning import READAHEAD_SLACK, READAHEAD_START, ClientTuning
from dfs.client.writeback import WriteBack
from dfs.client.writebuffer import lay_over
from dfs.rpc import common_pb2, meta_pb2

log = logging.getLogger(__name__)

MAX_FILE_SIZE = (1 << 63) - 1
O_ACCMODE = 0o3
OPEN_VIEW_TRIES = 5


def block_maps_of(reply: meta_pb2.GetBlockMapReply) -> BlockMaps:
    return BlockMaps(int(reply.size), {block_map.block: block_map for block_map in reply.blocks})
O_WRONLY = 0o1
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_DIRECT = 0o40000
S_ISUID = 0o4000
S_ISGID = 0o2000
# A time this close to the client's clock came from UTIME_NOW: pyfuse3 hands a
# file system "now" as a value, and "now" needs only write permission where a
# value needs ownership.
UTIME_NOW_WINDOW_NS = 2_000_000_000


@dataclass
class OpenFile:
    """One inode open in this mount: what all of its handles share."""

    ino: int
    writeback: WriteBack
    maps: BlockMaps | None = None  # committed slices as of open; None: fetch again
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    handles: int = 0

    @property
    def block_size(self) -> int:
        return self.writeback.block_size

    def buffered_end(self) -> int:
        return self.writeback.end()


@dataclass
class Handle:
    fh: int
    ino: int
    caller: common_pb2.Caller
    flags: int
    file: OpenFile
    read_end: int = -1  # where this handle's last read ended
    window: int = 0  # read-ahead window; grows while reads are sequential
    prefetched_to: int = 0  # read-ahead asked for up to here
    readahead: asyncio.Task[None] | None = None

    @property
    def direct(self) -> bool:
        """O_DIRECT: no client caching of this handle's reads."""
        return bool(self.flags & O_DIRECT)


class FsClient:
    """Everything a mount does to the cluster, one instance per mount."""

    def __init__(self, meta: MetaClient, data: FileData,
                 tuning: ClientTuning | None = None) -> None:
        self.meta = meta
        self.data = data
        self.tuning = tuning or ClientTuning()
        self.handles: dict[int, Handle] = {}
        self.files: dict[int, OpenFile] = {}
        self._fh_numbers = count(1)

    # ---- attributes ------------------------------------------------------------

    def merge_pending(self, attr: common_pb2.Attr) -> common_pb2.Attr:
        """`attr` with the size buffered writes will give the file."""
        open_file = self.files.get(attr.ino)
        pending = open_file.buffered_end() if open_file is not None else 0
        if pending > attr.size:
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
        reading = flags & O_ACCMODE != O_WRONLY
        opened = await self.meta.open_file(caller, ino, flags, with_block_maps=reading)
        attr = opened.attr
        truncated = bool(flags & O_TRUNC and (attr.size or ino in self.files))
        if truncated:
            attr = await self.truncate(caller, ino, 0)
        handle = self._new_handle(caller, ino, flags, opened.block_size or 4 << 20)
        if reading:
            # Close-to-open: the file is read as one version, the one whose attributes
            # open returns (the kernel keeps or drops its cache by them). The server
            # sends the maps of that version with the attributes when the file is
            # small enough; otherwise (or after our own truncate) they are read apart.
            async with handle.file.lock:
                if opened.HasField("block_maps") and not truncated:
                    handle.file.maps = block_maps_of(opened.block_maps)
                else:
                    attr, handle.file.maps = await self._consistent_view(handle, attr)
        return handle, self.merge_pending(attr)

    def _new_handle(
        self, caller: common_pb2.Caller, ino: int, flags: int, block_size: int
    ) -> Handle:
        open_file = self.files.get(ino)
        if open_file is None:
            tuning = self.tuning
            writeback = WriteBack(ino, block_size, self.data, tuning.upload_bytes,
                                  tuning.write_buffer_bytes)
            open_file = self.files[ino] = OpenFile(ino, writeback)
            self.meta.hold(ino)
        open_file.handles += 1
        handle = Handle(next(self._fh_numbers), ino, caller, flags, open_file)
        self.handles[handle.fh] = handle
        return handle

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
        handle = self._new_handle(caller, attr.ino, flags, attr.blksize or 4 << 20)
        handle.file.maps = BlockMaps(0, {})
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
        open_file = handle.file
        async with open_file.lock:
            open_file.writeback.raise_failure()
            await open_file.writeback.write(offset, data, handle.caller)
        return len(data)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        """The committed bytes as of open, with every buffered write of the file laid
        over them (up to the size those writes give it)."""
        handle = self.handle(fh)
        open_file = handle.file
        async with open_file.lock:
            open_file.writeback.raise_failure()
            if open_file.maps is None:
                open_file.maps = await self._whole_file_maps(handle)
            maps = open_file.maps
            end = min(offset + size, max(maps.size, open_file.buffered_end()))
            if end <= offset:
                return b""
            # Held bytes are copied now: writes may change them while chunks are read.
            held = open_file.writeback.held(offset, end)
        committed = await self.data.read(
            handle.caller, handle.ino, offset, end - offset, open_file.block_size, maps,
            cached=not handle.direct,
        )
        result = bytearray(committed)
        result.extend(bytes(end - offset - len(result)))  # past the committed size: zeros
        for layer in held:
            lay_over(result, offset, layer)
        if not handle.direct:
            self._read_ahead(handle, maps, offset, end)
        return bytes(result)

    def _read_ahead(self, handle: Handle, maps: BlockMaps, offset: int, end: int) -> None:
        """After a sequential read, fetch the next window of committed bytes into the
        chunk cache in the background; the window doubles while reads stay
        sequential (up to the tuning's bound) and closes at the first random one."""
        limit = self.tuning.readahead_bytes
        sequential = handle.read_end >= 0 and abs(offset - handle.read_end) <= READAHEAD_SLACK
        handle.read_end = end
        if not sequential or not limit:
            handle.window, handle.prefetched_to = 0, 0
            return
        handle.window = min(limit, max(READAHEAD_START, handle.window * 2))
        start = max(end, handle.prefetched_to)
        stop = min(end + handle.window, maps.size)
        if stop <= start or (handle.readahead is not None and not handle.readahead.done()):
            return
        handle.prefetched_to = stop
        handle.readahead = asyncio.ensure_future(
            self.data.prefetch(maps, start, stop - start, handle.file.block_size))
    async def _whole_file_maps(self, handle: Handle) -> BlockMaps:
        """Every block map of the file (count 0 = to the end), as of now."""
        return block_maps_of(await self.meta.block_maps(handle.caller, handle.ino))

    async def flush(self, fh: int) -> None:
        open_file = self.handle(fh).file
        async with open_file.lock:
            open_file.writeback.raise_failure()
            await self._flush_locked(open_file)

    async def fsync(self, fh: int) -> None:
        await self.flush(fh)

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is None:
            return
        if handle.readahead is not None:
            handle.readahead.cancel()
        open_file = handle.file
        open_file.handles -= 1
        try:
            async with open_file.lock:
                await self._flush_locked(open_file)
        finally:
            if open_file.handles == 0 and self.files.get(handle.ino) is open_file:
                del self.files[handle.ino]
                self.meta.release(handle.ino)

    async def _flush_locked(self, open_file: OpenFile) -> None:
        """Commit every held byte (writeback.py); on failure they stay held and the
        error is raised now and kept for the next call."""
        if not open_file.writeback.dirty:
            return
        await open_file.writeback.commit()
        open_file.maps = None  # our own commit changed the block maps

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
        """Buffered bytes at or past `size` are dropped first, so a later flush cannot
        bring them back; the ones before it stay buffered."""
        open_file = self.files.get(ino)
        if open_file is None:
            return await self.meta.setattr(
                meta_pb2.SetAttrRequest(caller=caller, ino=ino, size=size))
        async with open_file.lock:
            await open_file.writeback.cut(size)
            attr = await self.meta.setattr(
                meta_pb2.SetAttrRequest(caller=caller, ino=ino, size=size))
            open_file.maps = None
        return self.merge_pending(attr)

    async def flush_all(self) -> None:
        for open_file in list(self.files.values()):
            async with open_file.lock:
                with contextlib.suppress(OSError):  # logged in _flush_locked
                    await self._flush_locked(open_file)
