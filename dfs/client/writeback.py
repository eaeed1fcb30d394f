"""Write-back of one open file: buffered writes, uploaded in the background as they
fill, committed as slices on flush/fsync/release.

Owns the file's dirty bytes from write to commit. The current buffer takes writes;
when it holds `upload_bytes` it is sealed and its chunks start uploading (several
uploads in flight, each with several chunks in parallel) while writes go on into a
new buffer. A commit waits for the uploads, then commits every one in the order they
were sealed (newer bytes land later and win), the current buffer last. Dirty bytes
(sealed or not) never exceed `limit_bytes`: past it a write first commits what is
sealed. Bytes stay held until committed, so reads see them, and a failed upload is
uploaded again at the next commit. A failure is raised by the commit that met it
(or, for a background upload, by the next write) and kept for the next write, flush
or fsync too (EIO or the errno it had): never dropped. The caller holds the file's
lock around every call.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import dataclass, field
from typing import Protocol

from dfs.client.data import Staged
from dfs.client.writebuffer import Extent, cut_at, end_of, merge_into
from dfs.rpc import common_pb2

log = logging.getLogger(__name__)


class Uploader(Protocol):
    """What write-back needs of dfs.client.data.FileData."""

    async def upload(self, extents: list[tuple[int, bytes]], block_size: int) -> Staged: ...

    async def commit_staged(self, caller: common_pb2.Caller, ino: int,
                            staged: list[Staged], block_size: int) -> object: ...

    def session_expired(self, err: OSError, ino: int) -> bool: ...


@dataclass
class Upload:
    """Sealed bytes and the upload of their chunks (None: not started, or failed)."""

    extents: list[Extent]
    task: asyncio.Task[Staged] | None = None

    @property
    def size(self) -> int:
        return sum(len(extent.data) for extent in self.extents)


@dataclass
class WriteBack:
    ino: int
    block_size: int
    data: Uploader
    upload_bytes: int
    limit_bytes: int
    extents: list[Extent] = field(default_factory=list)  # the current buffer
    buffered: int = 0  # bytes in the current buffer
    sealed: list[Upload] = field(default_factory=list)  # oldest first
    writer: common_pb2.Caller | None = None  # whose writes are held
    failure: OSError | None = None

    @property
    def dirty(self) -> bool:
        return bool(self.extents or self.sealed)

    def end(self) -> int:
        """Just past the last held byte (0 when nothing is held)."""
        return max([end_of(self.extents), *(end_of(u.extents) for u in self.sealed)])

    def held(self, offset: int, end: int) -> list[list[Extent]]:
        """Copies of the held bytes within [offset, end), a layer per upload, oldest
        first: laid over the committed bytes in this order, newer bytes win."""
        layers = [upload.extents for upload in self.sealed] + [self.extents]
        return [
            [Extent(e.offset, bytearray(e.data))
             for e in layer if e.end > offset and e.offset < end]
            for layer in layers
        ]

    def raise_failure(self) -> None:
        """Raise the kept failure (then forget it), or that of an upload that failed since."""
        for upload in self.sealed:
            task = upload.task
            if task is not None and task.done() and (task.cancelled() or task.exception()):
                upload.task = None
                self._failed(_error_of(task))
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise OSError(failure.errno or errno.EIO, f"earlier write failed: {failure}")

    async def write(self, offset: int, data: bytes, caller: common_pb2.Caller) -> None:
        self.buffered += merge_into(self.extents, offset, data)
        self.writer = caller
        if self.buffered >= self.upload_bytes:
            self._seal()
            if sum(upload.size for upload in self.sealed) >= self.limit_bytes:
                await self.commit(include_current=False)

    def _seal(self) -> None:
        """The current buffer starts uploading; later writes go to a new one."""
        upload = Upload(self.extents)
        self.extents, self.buffered = [], 0
        self._start(upload)
        self.sealed.append(upload)

    def _start(self, upload: Upload) -> None:
        pieces = [(extent.offset, bytes(extent.data)) for extent in upload.extents]
        upload.task = asyncio.ensure_future(self.data.upload(pieces, self.block_size))
        # Seen by raise_failure or the commit; this only keeps asyncio from warning
        # about an error nobody retrieved yet.
        upload.task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def commit(self, include_current: bool = True) -> None:
        """Commit the sealed uploads (and the current buffer): returns when every
        chunk has its copies and the commit is chosen; raises, keeping the bytes."""
        if include_current and self.extents:
            self._seal()
        if not self.sealed:
            return
        for attempt in range(2):
            staged = await self._uploaded()
            try:
                await self.data.commit_staged(self.writer or common_pb2.Caller(), self.ino,
                                              staged, self.block_size)
                break
            except OSError as err:
                if attempt == 0 and self.data.session_expired(err, self.ino):
                    for upload in self.sealed:
                        self._start(upload)
                    continue
                self._failed(err)
                raise
        self.sealed.clear()

    async def _uploaded(self) -> list[Staged]:
        """Every sealed upload's result, oldest first, (re)starting those without one."""
        for upload in self.sealed:
            if upload.task is None:
                self._start(upload)
        tasks = [upload.task for upload in self.sealed if upload.task is not None]
        await asyncio.wait(tasks)
        failed = [upload for upload in self.sealed
                  if upload.task is None or upload.task.cancelled() or upload.task.exception()]
        if failed:
            err = _error_of(failed[0].task)
            for upload in failed:
                upload.task = None
            self._failed(err)
            raise err
        return [upload.task.result() for upload in self.sealed if upload.task is not None]

    def _failed(self, err: OSError) -> None:
        log.warning("write-back of inode %d failed: %s", self.ino, err)
        self.failure = err

    async def cut(self, size: int) -> None:
        """Before a truncate to `size`: commit what is sealed (it is older than the
        truncate), and drop buffered bytes at or past `size`."""
        await self.commit(include_current=False)
        self.buffered -= cut_at(self.extents, size)


def _error_of(task: asyncio.Task[Staged] | None) -> OSError:
    if task is None or task.cancelled():
        return OSError(errno.EIO, "upload cancelled")
    err = task.exception()
    if isinstance(err, OSError):
        return err
    return OSError(errno.EIO, f"upload failed: {err!r}")
