"""The orphan sweep on a real chunk store against a stand-in Cluster service: it
deletes exactly the held chunks that are unreferenced, allocated to no live session
and past the grace period."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dfs.data.store import ChunkStore
from dfs.data.sweep import OrphanSweep
from tests.unit.test_data_antientropy import refs_service


def test_only_old_unreferenced_chunks_below_the_horizon_go(tmp_path: Path) -> None:
    async def body() -> None:
        store = ChunkStore(tmp_path)
        for chunk_id in range(1, 10):
            store.put(chunk_id, bytes([chunk_id]) * 100)
        # A live session holds 3..4 (an old range) and 7; 9 is not allocated yet.
        async with refs_service(live=[2, 5], allocated=[(3, 2), (7, 1)],
                                next_chunk_id=9) as channels:
            assert await OrphanSweep(channels, store, grace_s=3600).sweep_once() == 0
            assert await OrphanSweep(channels, store, grace_s=0).sweep_once() == 3
            # 1, 6 and 8 were garbage; 2 and 5 are live; 3, 4, 7 and 9 may be committed.
            assert store.chunk_ids() == [2, 3, 4, 5, 7, 9]

    asyncio.run(body())
