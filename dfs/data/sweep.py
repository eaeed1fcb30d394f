"""The orphan sweep on a data server: delete held chunks that no file references and
no live session can still commit, once they are older than a grace period.

Owns that walk only. A chunk is deleted only when, in one answer of the metadata
service, it was unreferenced, already allocated and outside every live session's
allocated ranges (a commit naming an id outside its session's ranges is refused, so
such a chunk is garbage for good; this is the sweep horizon rule made exact, so one
long-lived mount's oldest range does not pin every later orphan), and its file here
is older than the grace period. It catches what the GC queue cannot: uploads whose
writer died or whose session expired before the commit, and copies left on a server
that was away when the queue was drained.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dfs.client.retry import LeaderChannels
from dfs.data.chunkrefs import held_pages
from dfs.data.periodic import every
from dfs.data.store import ChunkNotFound, ChunkStore, ChunkStoreError

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 60.0
# An hour: far longer than any upload-to-commit gap of a healthy writer, so the sweep
# never races a slow but live one even if the horizon rule were wrong.
DEFAULT_GRACE_S = 3600.0
BATCH = 1000


class OrphanSweep:
    """Deletes unreferenced chunks below the sweep horizon and past the grace period."""

    def __init__(self, channels: LeaderChannels, store: ChunkStore,
                 grace_s: float = DEFAULT_GRACE_S,
                 interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.channels = channels
        self.store = store
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.deleted = 0  # since start

    async def loop(self, stop: asyncio.Event) -> None:
        await every(self.interval_s, self.sweep_once, stop, "orphan sweep")

    async def sweep_once(self) -> int:
        """One walk over every held chunk; the number deleted."""
        deleted = 0
        async for held, refs in held_pages(self.store, self.channels, BATCH):
            dead = [c for c in held if c not in refs.live and not refs.committable(c)]
            if dead:
                deleted += await asyncio.to_thread(self._delete_old, dead)
        self.deleted += deleted
        if deleted:
            log.info("orphan sweep deleted %d unreferenced chunks", deleted)
        return deleted

    def _delete_old(self, chunk_ids: list[int]) -> int:
        oldest_kept_ns = time.time_ns() - int(self.grace_s * 1e9)
        deleted = 0
        for chunk_id in chunk_ids:
            try:
                written_ns = self.store.stat(chunk_id).mtime_ns
            except ChunkNotFound:
                continue
            except ChunkStoreError:
                # Unreadable header: garbage anyway, and no peer will repair it.
                written_ns = 0
            if written_ns < oldest_kept_ns:
                deleted += self.store.delete(chunk_id)
        return deleted
