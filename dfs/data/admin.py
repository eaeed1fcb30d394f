"""The Admin service on a data server: its status (capacity, used bytes, chunks, ring
epoch). Ring and membership changes go through the metadata servers, which own the
ring; a data server refuses them with a message saying so and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from dfs import __version__
from dfs.data.ringview import RingView
from dfs.data.store import ChunkStore
from dfs.rpc import admin_pb2, admin_pb2_grpc

ASK_META = "ring and membership changes are made through a metadata server (--meta)"


class DataAdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self, server_id: int, cluster_id: str, addr: str, store: ChunkStore, ring: RingView,
        capacity_limit: int,
    ) -> None:
        self.server_id = server_id
        self.cluster_id = cluster_id
        self.addr = addr
        self.store = store
        self.ring = ring
        self.capacity_limit = capacity_limit
        self.started = time.monotonic()

    async def Status(self, request: admin_pb2.StatusRequest, context: Any) -> admin_pb2.StatusReply:
        capacity = self.capacity_limit
        if not capacity:
            capacity, _ = await asyncio.to_thread(self.store.filesystem_bytes)
        return admin_pb2.StatusReply(
            kind=admin_pb2.SERVER_KIND_DATA,
            id=self.server_id,
            cluster_id=self.cluster_id,
            version=__version__,
            addr=self.addr,
            uptime_s=time.monotonic() - self.started,
            data=admin_pb2.DataStatus(
                capacity=capacity,
                used=self.store.used_bytes,
                chunks=self.store.chunk_count,
                ring_epoch=self.ring.epoch,
            ),
        )

    async def _refuse(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ASK_META)

    MetaAdd = MetaRemove = MetaTransferLeader = MetaSnapshot = _refuse
    DataDrain = DataOut = DataRemove = DataWeight = _refuse
    RingShow = RingSetReplication = _refuse
