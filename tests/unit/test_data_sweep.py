"""The orphan sweep on a real chunk store against a stand-in Cluster service: it
deletes exactly the held chunks that are unreferenced, below the sweep horizon and
past the grace period."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dfs.data.store import ChunkStore
from dfs.data.sweep import OrphanSweep
from tests.unit.test_data_antientropy import start_refs


def test_only_old_unreferenced_chunks_below_the_horizon_go(tmp_path: Path) -> None:
    async def body() -> None:
        store = ChunkStore(tmp_path)
        for chunk_id in range(1, 7):
            store.put(chunk_id, bytes([chunk_id]) * 100)
        meta, channels = await start_refs(live=[2, 5], sweep_horizon=4)
        try:
            assert await OrphanSweep(channels, store, grace_s=3600).sweep_once() == 0
            assert await OrphanSweep(channels, store, grace_s=0).sweep_once() == 2
            # 1 and 3 were garbage; 2 and 5 are live; 4 and 6 may still be committed.
            assert store.chunk_ids() == [2, 4, 5, 6]
        finally:
            await channels.close()
            await meta.stop(0)

    asyncio.run(body())
