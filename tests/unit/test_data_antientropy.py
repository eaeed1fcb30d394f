"""Anti-entropy on in-process data servers with real stores, against a stand-in
Cluster service that lists referenced chunks: a live chunk missing from a live home is
pushed there by exactly one holder, orphans are never pushed, down homes are skipped,
and the under-replicated count is reported."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dfs.client.retry import LeaderChannels, RetryPolicy
from dfs.data.antientropy import AntiEntropy
from dfs.placement.members import MemberState
from dfs.placement.wire import config_from_proto
from dfs.rpc import meta_pb2, meta_pb2_grpc
from dfs.serving import GrpcServer
from tests.support.data_cluster import LocalDataServer, ring_of_servers, start_local_data_servers


class FakeRefs(meta_pb2_grpc.ClusterServicer):
    def __init__(self, live: list[int]) -> None:
        self.live = sorted(live)

    async def ListChunkRefs(self, request: Any, context: Any) -> meta_pb2.ListChunkRefsReply:
        page = [c for c in self.live if c >= request.start][: request.limit]
        more = len(page) == request.limit and page[-1] != self.live[-1]
        return meta_pb2.ListChunkRefsReply(chunk_ids=page, refs=[1] * len(page),
                                           next=page[-1] + 1 if more else 0)


async def start_refs(live: list[int]) -> tuple[GrpcServer, LeaderChannels]:
    server = GrpcServer("127.0.0.1:0", None)
    server.add(lambda s: meta_pb2_grpc.add_ClusterServicer_to_server(FakeRefs(live), s))
    await server.start()
    channels = LeaderChannels([f"127.0.0.1:{server.port}"], None,
                              RetryPolicy(deadline_s=5, attempt_timeout_s=2))
    return server, channels


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
        servers = await start_local_data_servers(3, tmp_path)  # R = 3: all are homes
        meta, channels = await start_refs(live=[1, 3, 4])
        try:
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
        finally:
            await channels.close()
            await meta.stop(0)
            for server in servers:
                await server.stop()

    asyncio.run(body())


def test_a_down_home_is_skipped_and_counted_under_replicated(tmp_path: Path) -> None:
    async def body() -> None:
        servers = await start_local_data_servers(3, tmp_path)
        meta, channels = await start_refs(live=[7])
        try:
            servers[0].store.put(7, b"x")
            first, _, _ = agents(servers, channels, states={3: MemberState.DOWN})
            assert await first.run_pass() == 1  # to server 2 only
            assert servers[1].store.has(7) and not servers[2].store.has(7)
            assert first.under_replicated == 1
        finally:
            await channels.close()
            await meta.stop(0)
            for server in servers:
                await server.stop()

    asyncio.run(body())
