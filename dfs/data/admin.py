"""The Admin service on a data server: its status (capacity, used bytes, chunks, ring
epoch, scrub and anti-entropy progress) and `scrub start`. Ring and membership changes
go through the metadata servers, which own the ring; a data server refuses them with
a message saying so and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from dfs import __version__
from dfs.data.antientropy import AntiEntropy
from dfs.data.pacing import MB
from dfs.data.repair import Upkeep
from dfs.data.ringview import RingView
from dfs.data.scrub import Scrubber
from dfs.data.store import ChunkStore
from dfs.rpc import admin_pb2, admin_pb2_grpc

ASK_META = "ring and membership changes are made through a metadata server (--meta)"
ASK_LEADER = "fsck and sessions are answered by the metadata leader (--meta)"


class DataAdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self, server_id: int, cluster_id: str, addr: str, store: ChunkStore, ring: RingView,
        capacity_limit: int, scrubber: Scrubber, anti_entropy: AntiEntropy, upkeep: Upkeep,
    ) -> None:
        self.server_id = server_id
        self.cluster_id = cluster_id
        self.addr = addr
        self.store = store
        self.ring = ring
        self.capacity_limit = capacity_limit
        self.scrubber = scrubber
        self.anti_entropy = anti_entropy
        self.upkeep = upkeep
        self.started = time.monotonic()

    async def Status(self, request: admin_pb2.StatusRequest, context: Any) -> admin_pb2.StatusReply:
        capacity = self.capacity_limit
        if not capacity:
            capacity, _ = await asyncio.to_thread(self.store.filesystem_bytes)
        scrub = self.scrubber.progress()
        anti_entropy = self.anti_entropy
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
                scrub_running=scrub.running,
                scrub_passes=scrub.passes,
                scrub_chunks=scrub.chunks_checked,
                scrub_bytes=scrub.bytes_checked,
                scrub_bad=scrub.bad_found,
                scrub_rate=scrub.rate_bytes_per_s,
                scrub_last_pass=scrub.last_pass_finished_s,
                pushed=anti_entropy.pushed,
                pushed_bytes=anti_entropy.pushed_bytes,
                dropped=anti_entropy.dropped,
                misplaced=anti_entropy.last.misplaced,
                pass_epoch=anti_entropy.last.epoch,
                repaired=self.upkeep.repaired,
            ),
        )

    async def ScrubStart(
        self, request: admin_pb2.ScrubRequest, context: Any
    ) -> admin_pb2.AdminReply:
        if request.rate_mbps < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rate must be >= 0 MB/s")
        self.scrubber.request_pass(request.rate_mbps)
        rate = self.scrubber.pacer.rate_bytes_per_s
        return admin_pb2.AdminReply(
            ok=True, message=f"scrub started at {rate / 1e6:g} MB/s" if rate else
            "scrub started, unpaced",
        )

    async def Rebalance(
        self, request: admin_pb2.RebalanceRequest, context: Any
    ) -> admin_pb2.AdminReply:
        if request.rate_mbps < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rate must be >= 0 MB/s")
        if request.rate_mbps > 0:
            self.anti_entropy.pacer.set_rate(request.rate_mbps * MB)
        self.anti_entropy.wake.set()
        rate = self.anti_entropy.pacer.rate_bytes_per_s
        return admin_pb2.AdminReply(
            ok=True, message=f"pass started, pushing at {rate / 1e6:g} MB/s" if rate else
            "pass started, unpaced")

    async def _refuse(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ASK_META)

    MetaAdd = MetaRemove = MetaTransferLeader = MetaSnapshot = _refuse
    DataDrain = DataOut = DataRemove = DataWeight = DataList = _refuse
    RingShow = RingSetReplication = RingPlan = _refuse

    async def Fsck(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ASK_LEADER)
        yield  # a streaming handler must be an async generator; never reached

    async def _ask_leader(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ASK_LEADER)

    SessionList = SessionEvict = _ask_leader
