"""Scrub and repair on in-process data servers with real stores: a scrub pass finds a
flipped byte and marks the copy, a repair pass replaces it with a good copy from a
ring member, and a copy with no good twin anywhere stays marked."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dfs.data.repair import Upkeep
from dfs.data.store import ChunkStore
from dfs.placement.wire import config_from_proto
from tests.support.data_cluster import (
    LocalDataServer,
    ring_of_servers,
    start_local_data_servers,
)


def flip_byte(store: ChunkStore, chunk_id: int) -> None:
    path = store.path_of(chunk_id)
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(os.path.getsize(path) - 10)
        original = chunk_file.read(1)
        chunk_file.seek(-1, os.SEEK_CUR)
        chunk_file.write(bytes([original[0] ^ 0x02]))


def upkeep_of(server: LocalDataServer, servers: list[LocalDataServer]) -> Upkeep:
    server.ring.adopt(config_from_proto(ring_of_servers(servers)))
    return Upkeep(server.store, server.ring, server.addr, server.peers)


def test_scrub_finds_a_flipped_byte_and_repair_restores_the_copy(tmp_path: Path) -> None:
    async def body() -> None:
        servers = await start_local_data_servers(3, tmp_path)
        try:
            contents = {chunk_id: os.urandom(200_000 + chunk_id) for chunk_id in range(1, 6)}
            for server in servers:
                for chunk_id, content in contents.items():
                    server.store.put(chunk_id, content)
            damaged = servers[0]
            flip_byte(damaged.store, 3)
            upkeep = upkeep_of(damaged, servers)
            assert await upkeep.scrub_once(batch=2) == 0  # ids 1, 2
            assert await upkeep.scrub_once(batch=2) == 1  # ids 3, 4
            assert damaged.store.repair_queue() == [3]
            assert await upkeep.repair_once() == 1
            assert damaged.store.repair_queue() == []
            assert damaged.store.read(3) == contents[3]
            assert await upkeep.scrub_once(batch=10) == 0  # wrapped around: all good
        finally:
            for server in servers:
                await server.stop()

    asyncio.run(body())


def test_a_copy_with_no_good_twin_stays_marked(tmp_path: Path) -> None:
    async def body() -> None:
        servers = await start_local_data_servers(2, tmp_path)
        try:
            content = os.urandom(100_000)
            for server in servers:
                server.store.put(9, content)
                flip_byte(server.store, 9)
            upkeep = upkeep_of(servers[0], servers)
            assert await upkeep.scrub_once() == 1
            assert await upkeep.repair_once() == 0
            assert servers[0].store.repair_queue() == [9] and upkeep.unrepaired == 1
        finally:
            for server in servers:
                await server.stop()

    asyncio.run(body())
