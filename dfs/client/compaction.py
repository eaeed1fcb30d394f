"""Slice compaction: a block whose map holds more than K slices is read as it is now,
written as one new chunk and committed in place of those slices (DESIGN.md, "Data").

Owns which blocks are due, the bound on compactions in flight, and the guard of the
replace-commit. A compaction never changes a byte: the new chunk holds exactly what
the replaced slices showed, and the metadata service refuses (EAGAIN) a replace whose
slices changed since they were read, so a concurrent write or truncate is never lost;
a refused or failed compaction leaves only an orphan chunk for the sweep and is tried
again when the block next grows. It runs in the background after the commits (and
reads before them) show a block over K, never inside a write's acknowledgement.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dfs.client.chunkio import StoredChunk
from dfs.client.slices import covered
from dfs.rpc import common_pb2, meta_pb2

if TYPE_CHECKING:
    from dfs.client.data import FileData

log = logging.getLogger(__name__)

# Compactions in flight at once: each reads and writes up to a block, in the
# background of the writes that caused it, so few at a time.
MAX_COMPACTIONS = 2
# Blocks waiting for one of them; past this a block is left for its next commit, so
# a burst of writes to many blocks queues no unbounded work.
MAX_WAITING = 256
# Blocks whose slice count this client tracks; the least recently touched are
# forgotten first (a forgotten block is counted again from its next map or commit).
MAX_TRACKED_BLOCKS = 4096
# Tries of one compaction when the block changed under it: a busy block is left for
# the next commit that finds it over K.
MAX_TRIES = 2

Key = tuple[int, int]  # (inode, block)


@dataclass(frozen=True)
class Merged:
    """A block's slices as read, stored as one chunk, not committed yet."""

    ino: int
    block: int
    caller: common_pb2.Caller
    update: meta_pb2.BlockUpdate
    chunk: StoredChunk


class Compactor:
    """Compaction of the blocks one client sees grow past `max_slices` (0: never)."""

    def __init__(self, files: FileData, max_slices: int) -> None:
        self.files = files
        self.max_slices = max_slices
        self._slices: OrderedDict[Key, int] = OrderedDict()  # as far as this client knows
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._parallel = asyncio.Semaphore(MAX_COMPACTIONS)
        self.compacted = 0  # blocks whose slices were replaced
        self.refused = 0  # replace-commits refused because the block had changed

    # -- what triggers a compaction ------------------------------------------------

    def saw(self, ino: int, block: int, slices: int) -> None:
        """A block map read for a read showed `slices`. Counts this client already
        keeps are newer than a map held since open, so only new blocks take it. A
        read alone starts no compaction: every mount reading a file would race to
        rewrite it; the next commit to the block does."""
        key = (ino, block)
        if key not in self._slices:
            self._track(key, slices)

    def added(self, caller: common_pb2.Caller, ino: int, block: int, slices: int,
              block_size: int) -> None:
        """This client committed `slices` more slices to the block."""
        key = (ino, block)
        self._track(key, self._slices.get(key, 0) + slices)
        self._start_if_due(caller, key, block_size)

    def _track(self, key: Key, slices: int) -> None:
        self._slices[key] = slices
        self._slices.move_to_end(key)
        while len(self._slices) > MAX_TRACKED_BLOCKS:
            self._slices.popitem(last=False)

    def _start_if_due(self, caller: common_pb2.Caller, key: Key, block_size: int) -> None:
        due = self.max_slices and self._slices[key] > self.max_slices
        if not due or key in self._running or len(self._running) >= MAX_WAITING:
            return
        task = asyncio.ensure_future(self._compact_in_background(caller, *key, block_size))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _compact_in_background(self, caller: common_pb2.Caller, ino: int, block: int,
                                     block_size: int) -> None:
        """Compact until the block is back within K: commits that land meanwhile add
        slices after the ones compacted."""
        try:
            while self._slices.get((ino, block), 0) > self.max_slices:
                if not await self.compact(caller, ino, block, block_size):
                    return
        except OSError as err:
            log.info("compaction of inode %d block %d: %s; left as it is", ino, block, err)

    async def settled(self) -> None:
        """Returns when no compaction is running (those that start meanwhile too)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()))

    # -- one compaction ------------------------------------------------------------

    async def compact(self, caller: common_pb2.Caller, ino: int, block: int,
                      block_size: int) -> bool:
        """Compact the block if it holds more than max_slices now; whether it was."""
        async with self._parallel:
            for _ in range(MAX_TRIES):
                merged = await self.prepare(caller, ino, block, block_size)
                if merged is None:
                    return False
                if await self.install(merged):
                    return True
        return False

    async def prepare(self, caller: common_pb2.Caller, ino: int, block: int,
                      block_size: int) -> Merged | None:
        """The block's bytes as its map says now, stored as one new chunk with R
        copies; None when the block holds max_slices or fewer."""
        maps = await self.files.block_maps(caller, ino, block * block_size, 1, block_size)
        block_map = maps.by_block.get(block)
        slices = list(block_map.slices) if block_map is not None else []
        self._track((ino, block), len(slices))
        if len(slices) <= max(self.max_slices, 1):
            return None
        ranges = covered(slices, block_size)
        first, last = ranges[0][0], ranges[-1][1]
        data = await self.files.read_from(maps, block * block_size + first, last - first,
                                          block_size)
        chunk = await self.files.write_chunk(data)
        if chunk.under_replicated:  # compaction must not lower redundancy
            raise OSError(errno.EIO, "merged chunk has fewer than R copies; not committed")
        update = meta_pb2.BlockUpdate(
            block=block, replace=True, replaces_count=len(slices),
            replaces_last_chunk=slices[-1].chunk_id,
            slices=[common_pb2.Slice(offset=lo, length=hi - lo, chunk_id=chunk.chunk_id,
                                     offset_in_chunk=lo - first, epoch=chunk.epoch)
                    for lo, hi in ranges],
        )
        return Merged(ino, block, caller, update, chunk)

    async def install(self, merged: Merged) -> bool:
        """Commit the merged chunk in place of the slices it was read from; False when
        the block changed since (EAGAIN) or was cut below them (EINVAL)."""
        try:
            # end 0: a compaction never grows the file.
            await self.files.meta.commit(merged.caller, merged.ino, [merged.update], 0)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EINVAL):
                raise
            self.refused += 1
            log.debug("compaction of inode %d block %d refused: %s", merged.ino,
                      merged.block, err)
            return False
        self.compacted += 1
        key = (merged.ino, merged.block)
        replaced = merged.update.replaces_count
        # The count now: what this client committed after the read stays on top.
        self._track(key, self._slices.get(key, replaced) - replaced + len(merged.update.slices))
        return True

