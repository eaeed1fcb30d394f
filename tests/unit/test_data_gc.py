"""Garbage collection on data servers against a stand-in Cluster service, with real
in-process data servers: released chunks are deleted everywhere, an id is
acknowledged only when no ring member still holds a copy, an unreachable member
delays the acknowledgement, and nothing unreleased is touched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dfs.client.retry import LeaderChannels
from dfs.data.gc import GarbageCollector
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc
from tests.support.data_cluster import (
    LocalDataServer,
    local_data_servers,
    ring_of_servers,
    stand_in_cluster_service,
)


class FakeCluster(meta_pb2_grpc.ClusterServicer):
    """A GC queue shared by every data server, as the metadata leader keeps it."""

    def __init__(self, queue: list[int]) -> None:
        self.queue = list(queue)
        self.acked: list[list[int]] = []

    async def FetchGC(self, request: Any, context: Any) -> meta_pb2.FetchGCReply:
        return meta_pb2.FetchGCReply(chunk_ids=self.queue[: request.limit])

    async def AckGC(self, request: Any, context: Any) -> common_pb2.Empty:
        self.acked.append(list(request.chunk_ids))
        self.queue = [c for c in self.queue if c not in set(request.chunk_ids)]
        return common_pb2.Empty()


def collectors(servers: list[LocalDataServer], channels: LeaderChannels
               ) -> list[GarbageCollector]:
    ring = config_from_proto(ring_of_servers(servers))
    result = []
    for server in servers:
        server.ring.adopt(ring)
        result.append(GarbageCollector(channels, server.server_id, server.addr, server.store,
                                       server.ring, server.peers))
    return result


def test_released_chunks_are_deleted_everywhere_before_the_ack(tmp_path: Path) -> None:
    async def body() -> None:
        cluster = FakeCluster([1, 2])
        async with (local_data_servers(3, tmp_path) as servers,
                    stand_in_cluster_service(cluster) as channels):
            for server in servers:
                for chunk_id in (1, 2, 3):
                    server.store.put(chunk_id, b"chunk %d" % chunk_id)
            first, second, third = collectors(servers, channels)
            # The first pass deletes here but others still hold copies: no ack.
            assert await first.collect_once() == 0 and cluster.acked == []
            assert not servers[0].store.has(1) and servers[1].store.has(1)
            assert await second.collect_once() == 0
            # The last holder deletes and, finding no copy anywhere, acknowledges.
            assert await third.collect_once() == 2 and cluster.acked == [[1, 2]]
            for server in servers:
                assert not server.store.has(1) and not server.store.has(2)
                assert server.store.read(3) == b"chunk 3"  # never released
            assert cluster.queue == []

    asyncio.run(body())


def test_an_unreachable_member_keeps_the_id_queued(tmp_path: Path) -> None:
    async def body() -> None:
        cluster = FakeCluster([7])
        async with (local_data_servers(2, tmp_path) as servers,
                    stand_in_cluster_service(cluster) as channels):
            servers[0].store.put(7, b"released")
            first, _ = collectors(servers, channels)
            await servers[1].stop()  # may hold a copy; cannot say
            assert await first.collect_once() == 0
            assert not servers[0].store.has(7) and cluster.queue == [7]

    asyncio.run(body())
