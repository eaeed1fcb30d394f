"""Scrub and repair on in-process data servers with real stores: a scrub pass finds a
flipped byte and marks the copy, a repair pass replaces it with a good copy from a
ring member, a copy with no good twin anywhere stays marked, and the scrub keeps to
its byte rate."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from dfs.data.repair import Upkeep
from dfs.data.scrub import Scrubber
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
            scrubber = Scrubber(damaged.store, rate_mbps=0)
            assert await scrubber.scrub_pass() == 1
            assert scrubber.progress().chunks_checked == 5
            assert damaged.store.repair_queue() == [3]
            assert await upkeep.repair_once() == 1
            assert damaged.store.repair_queue() == []
            assert damaged.store.read(3) == contents[3]
            assert await scrubber.scrub_pass() == 0
            assert scrubber.progress().passes == 2 and scrubber.progress().bad_found == 1
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
            assert await Scrubber(servers[0].store, rate_mbps=0).scrub_pass() == 1
            assert await upkeep.repair_once() == 0
            assert servers[0].store.repair_queue() == [9] and upkeep.unrepaired == 1
        finally:
            for server in servers:
                await server.stop()

    asyncio.run(body())


def test_the_scrub_keeps_to_its_byte_rate(tmp_path: Path) -> None:
    async def body() -> None:
        store = ChunkStore(tmp_path)
        for chunk_id in range(1, 9):
            store.put(chunk_id, os.urandom(250_000))  # 2 MB in all
        scrubber = Scrubber(store, rate_mbps=1.0)  # 1 MB burst, then 1 MB/s
        started = time.monotonic()
        assert await scrubber.scrub_pass() == 0
        # A lower bound only: a loaded machine may be slower, never faster.
        assert time.monotonic() - started >= 0.7
        assert scrubber.progress().bytes_checked == 2_000_000

    asyncio.run(body())
