"""The scrubber on a data server: a background walk that re-reads and verifies every
held chunk at a bounded byte rate, so rot is found before a reader needs the copy.

Owns the scrub cursor, its pacing and its progress figures. A chunk that fails
verification is marked for repair by the store; the repair pass (repair.py) then
replaces it from a good copy. The scrubber itself never writes or deletes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from dfs.data.pacing import MB, BytePacer
from dfs.data.periodic import every
from dfs.data.store import ChunkNotFound, ChunkStore, ChunkStoreError

log = logging.getLogger(__name__)

# 4 MB/s verifies a 1 TB disk in about three days while taking a few percent of a
# disk's bandwidth from clients; reads verify what they touch anyway.
DEFAULT_RATE_MBPS = 4.0
# A full pass, then a rest before the next: rot is slow, and an idle pass costs CPU.
REST_BETWEEN_PASSES_S = 3600.0
BATCH = 64  # ids taken from the store's index at a time


@dataclass(frozen=True, slots=True)
class ScrubProgress:
    """What `dfs admin scrub status` shows for one server."""

    running: bool
    passes: int  # full passes completed since start
    chunks_checked: int  # in the current (or last) pass
    bytes_checked: int
    bad_found: int  # since start
    rate_bytes_per_s: float
    last_pass_finished_s: float  # time.time() of the last complete pass, 0 = none


class Scrubber:
    """Verifies every chunk in id order, wrapping around, at rate_mbps."""

    def __init__(self, store: ChunkStore, rate_mbps: float = DEFAULT_RATE_MBPS,
                 rest_s: float = REST_BETWEEN_PASSES_S) -> None:
        self.store = store
        self.configured_rate = rate_mbps * MB
        self.pacer = BytePacer(self.configured_rate)
        self.rest_s = rest_s
        self.start_now = asyncio.Event()
        self._running = False
        self._passes = 0
        self._chunks = 0
        self._bytes = 0
        self._bad = 0
        self._finished_at = 0.0

    def request_pass(self, rate_mbps: float = 0.0) -> None:
        """Start a full pass now (at rate_mbps, or the configured rate when 0); a pass
        already running restarts from the first chunk."""
        self.pacer.set_rate(rate_mbps * MB if rate_mbps > 0 else self.configured_rate)
        self.start_now.set()

    def progress(self) -> ScrubProgress:
        return ScrubProgress(self._running, self._passes, self._chunks, self._bytes,
                             self._bad, self.pacer.rate_bytes_per_s, self._finished_at)

    async def loop(self, stop: asyncio.Event) -> None:
        await every(self.rest_s, self.scrub_pass, stop, "scrub", wake=self.start_now)

    async def scrub_pass(self) -> int:
        """Verify every held chunk once; the number found bad."""
        self.start_now.clear()
        self._running = True
        self._chunks = self._bytes = 0
        bad = 0
        start = 0
        try:
            while True:
                chunk_ids = self.store.chunk_ids(start, BATCH)
                for chunk_id in chunk_ids:
                    if self.start_now.is_set():
                        break
                    bad += await self._check(chunk_id)
                if self.start_now.is_set():  # asked to start over from the first chunk
                    self.start_now.clear()
                    self._chunks = self._bytes = start = 0
                    continue
                if len(chunk_ids) < BATCH:
                    break
                start = chunk_ids[-1] + 1
        finally:
            self._running = False
        self._passes += 1
        self._finished_at = time.time()
        self.pacer.set_rate(self.configured_rate)
        if bad:
            log.warning("scrub pass found %d bad copies (marked for repair)", bad)
        return bad

    async def _check(self, chunk_id: int) -> int:
        try:
            size = (await asyncio.to_thread(self.store.stat, chunk_id)).length
        except ChunkNotFound:
            return 0  # deleted since listed
        except ChunkStoreError:
            size = 0  # a bad header: verify() below marks it
        await self.pacer.spend(size)
        good = await asyncio.to_thread(self.store.verify, chunk_id)
        self._chunks += 1
        self._bytes += size
        if not good and self.store.has(chunk_id):
            self._bad += 1
            return 1
        return 0
