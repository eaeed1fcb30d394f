"""Anti-entropy on in-process data servers with real stores, against a stand-in
Cluster service that lists referenced chunks: a live chunk missing from a live home is
pushed there by exactly one holder, orphans are never pushed, down homes are skipped,
the under-replicated count is reported, and a copy held by a server that is no home
(a rebalance, a drain) is dropped only once every home holds a verified copy."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from dfs.client.retry import LeaderChannels
from dfs.data.antientropy import AntiEntropy
from dfs.placement.members import MemberState
from dfs.placement.ring import Ring
from dfs.placement.wire import config_from_proto
from dfs.rpc import meta_pb2, meta_pb2_grpc
from tests.support.data_cluster import (
    LocalDataServer,
    local_data_servers,
    ring_of_servers,
    stand_in_cluster_service,
)


class FakeRefs(meta_pb2_grpc.ClusterServicer):
    def __init__(self, live: list[int], allocated: list[tuple[int, int]],
                 next_chunk_id: int) -> None:
        self.live = sorted(live)
        self.allocated = allocated
        self.next_chunk_id = next_chunk_id

    async def ListChunkRefs(self, request: Any, context: Any) -> meta_pb2.ListChunkRefsReply:
        page = [c for c in self.live if c >= request.start][: request.limit]
        more = len(page) == request.limit and page[-1] != self.live[-1]
        return meta_pb2.ListChunkRefsReply(chunk_ids=page, refs=[1] * len(page),
                                           next=page[-1] + 1 if more else 0,
                                           allocated_first=[f for f, _ in self.allocated],
                                           allocated_count=[c for _, c in self.allocated],
                                           next_chunk_id=self.next_chunk_id)


def refs_service(live: list[int], allocated: list[tuple[int, int]] | None = None,
                 next_chunk_id: int = 2**63) -> AbstractAsyncContextManager[LeaderChannels]:
    return stand_in_cluster_service(FakeRefs(live, allocated or [], next_chunk_id))


def agents(servers: list[LocalDataServer], channels: LeaderChannels,
           states: dict[int, MemberState] | None = None) -> list[AntiEntropy]:
    config = config_from_proto(ring_of_servers(servers, states=states))
    result = []
    for server in servers:
        server.ring.adopt(config)
        result.append(AntiEntropy(channels, server.store, server.ring, server.addr,
                                  server.peers))
    return result


def test_live_chunks_reach_every_live_home_from_one_holder(tmp_path: Path) -> None:
    async def body() -> None:
        async with (local_data_servers(3, tmp_path) as servers,  # R = 3: all are homes
                    refs_service(live=[1, 3, 4]) as channels):
            a, b, c = servers
            a.store.put(1, b"only on a")
            a.store.put(2, b"an orphan")
            for server in servers:
                server.store.put(3, b"everywhere")
            a.store.put(4, b"on a and b")
            b.store.put(4, b"on a and b")
            ae_a, ae_b, ae_c = agents(servers, channels)
            pushed = [await agent.run_pass() for agent in (ae_a, ae_b, ae_c)]
            assert sum(pushed) == 3  # chunk 1 to b and c, chunk 4 to c, once
            for server in servers:
                assert server.store.read(1) == b"only on a"
                assert server.store.read(4) == b"on a and b"
            assert not b.store.has(2) and not c.store.has(2)
            assert [await agent.run_pass() for agent in (ae_a, ae_b, ae_c)] == [0, 0, 0]
            assert ae_a.under_replicated == 0

    asyncio.run(body())


def test_a_down_home_is_skipped_and_counted_under_replicated(tmp_path: Path) -> None:
    async def body() -> None:
        async with (local_data_servers(3, tmp_path) as servers,
                    refs_service(live=[7]) as channels):
            servers[0].store.put(7, b"x")
            first, _, _ = agents(servers, channels, states={3: MemberState.DOWN})
            assert await first.run_pass() == 1  # to server 2 only
            assert servers[1].store.has(7) and not servers[2].store.has(7)
            assert first.under_replicated == 1

    asyncio.run(body())


def homes_and_stranger(servers: list[LocalDataServer], chunk_id: int,
                       states: dict[int, MemberState] | None = None,
                       ) -> tuple[list[LocalDataServer], LocalDataServer]:
    ring = Ring(config_from_proto(ring_of_servers(servers, states=states)))
    home_ids = {m.id for m in ring.preference_list(chunk_id)}
    homes = [s for s in servers if s.server_id in home_ids]
    return homes, next(s for s in servers if s.server_id not in home_ids)


def test_a_copy_no_home_owns_is_pushed_home_then_dropped(tmp_path: Path) -> None:
    async def body() -> None:
        async with (local_data_servers(4, tmp_path) as servers,  # R = 3 of 4
                    refs_service(live=[5]) as channels):
            homes, stranger = homes_and_stranger(servers, 5)
            stranger.store.put(5, b"written before the ring changed")
            homes[0].store.put(5, b"written before the ring changed")
            stranger.store.put(6, b"an orphan is not ours to move")
            by_id = {a.self_addr: a for a in agents(servers, channels)}
            assert await by_id[stranger.addr].run_pass() == 0  # a home holds it: no push,
            assert stranger.store.has(5)  # and no drop while two homes lack it
            assert by_id[stranger.addr].last.misplaced == 1
            assert await by_id[homes[0].addr].run_pass() == 2  # the first holder pushes
            await by_id[stranger.addr].run_pass()
            for home in homes:
                assert home.store.read(5) == b"written before the ring changed"
            assert not stranger.store.has(5)  # every home confirmed: dropped
            assert by_id[stranger.addr].dropped == 1
            assert by_id[stranger.addr].last.misplaced == 0
            assert by_id[stranger.addr].last.live_held == 0
            assert stranger.store.has(6)  # unreferenced here: the sweep's, not ours

    asyncio.run(body())


def test_no_copy_is_dropped_while_a_home_is_down(tmp_path: Path) -> None:
    async def body() -> None:
        async with (local_data_servers(4, tmp_path) as servers,
                    refs_service(live=[5]) as channels):
            homes, stranger = homes_and_stranger(servers, 5)
            for server in servers:
                server.store.put(5, b"x" * 1000)
            down = {homes[0].server_id: MemberState.DOWN}
            by_id = {a.self_addr: a for a in agents(servers, channels, states=down)}
            await by_id[stranger.addr].run_pass()
            assert stranger.store.has(5)
            assert by_id[stranger.addr].last.misplaced == 1

    asyncio.run(body())


def test_a_draining_server_hands_everything_to_the_homes(tmp_path: Path) -> None:
    async def body() -> None:
        chunk_ids = list(range(100, 140))
        async with (local_data_servers(4, tmp_path) as servers,
                    refs_service(live=chunk_ids) as channels):
            draining = servers[0]
            for chunk_id in chunk_ids:
                draining.store.put(chunk_id, chunk_id.to_bytes(8, "little") * 100)
            by_id = {a.self_addr: a for a in
                     agents(servers, channels, states={1: MemberState.DRAINING})}
            await by_id[draining.addr].run_pass()
            assert draining.store.chunk_count == 0
            for server in servers[1:]:  # three servers left for R = 3: each holds all
                for chunk_id in chunk_ids:
                    assert server.store.read(chunk_id) == chunk_id.to_bytes(8, "little") * 100

    asyncio.run(body())
