"""The Cluster service: how data servers join the ring, report liveness and load,
page through live chunk references (anti-entropy, orphan sweep) and drain the
GC queue. Served by the metadata leader; followers redirect."""

from __future__ import annotations

import time
from typing import Any

import grpc

from dfs.meta import convert, ops
from dfs.meta.duties import DataServerSeen, LeaderDuties
from dfs.meta.proposer import Proposer, invalid
from dfs.meta.results import ChunkRefsResult, ErrnoResult, GCResult, RingResult
from dfs.paxos.grpc_errors import abort_not_leader
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc

MAX_PAGE = 10_000


class ClusterService(meta_pb2_grpc.ClusterServicer):
    def __init__(self, proposer: Proposer, duties: LeaderDuties, cluster_id: str) -> None:
        self.proposer = proposer
        self.duties = duties
        self.cluster_id = cluster_id

    async def RegisterData(
        self, request: meta_pb2.RegisterDataRequest, context: Any
    ) -> common_pb2.Ring:
        if request.cluster_id != self.cluster_id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"data server of cluster {request.cluster_id!r} cannot join {self.cluster_id!r}",
            )
        if request.id == 0 or ":" not in request.addr or request.weight == 0:
            await invalid(context, "register needs an id > 0, a host:port and a weight > 0")
        result = await self.proposer.system_op(
            context, ops.RegisterData(request.id, request.addr, request.weight, request.domain)
        )
        if isinstance(result, ErrnoResult) and result.errno:
            await invalid(
                context,
                f"cannot register data server {request.id}: errno "
                f"{result.errno} (id or address already taken?)",
            )
        self.duties.heartbeat(request.id, DataServerSeen(last_heard=time.monotonic()))
        ring = await self.proposer.query(context, ops.GetRing())
        assert isinstance(ring, RingResult)
        return convert.ring_to_pb(ring.ring)

    async def DataHeartbeat(
        self, request: meta_pb2.DataHeartbeatRequest, context: Any
    ) -> meta_pb2.DataHeartbeatReply:
        node = self.proposer.node
        if not node.core.is_leader:
            await abort_not_leader(context, node.leader_addr())
        self.duties.heartbeat(
            request.id,
            DataServerSeen(
                last_heard=time.monotonic(),
                capacity=request.capacity,
                used=request.used,
                chunks=request.chunks,
                load=request.load,
                under_replicated=request.under_replicated,
                lost=request.lost,
                misplaced=request.misplaced,
                pass_epoch=request.pass_epoch,
                live_held=request.live_held,
            ),
        )
        epoch = self.proposer.state.namespace.state.ring.ring().epoch
        return meta_pb2.DataHeartbeatReply(ring_epoch=epoch)

    async def ListChunkRefs(
        self, request: meta_pb2.ListChunkRefsRequest, context: Any
    ) -> meta_pb2.ListChunkRefsReply:
        limit = min(request.limit or MAX_PAGE, MAX_PAGE)
        result = await self.proposer.query(context, ops.ListChunkRefs(request.start, limit))
        assert isinstance(result, ChunkRefsResult)
        return meta_pb2.ListChunkRefsReply(
            chunk_ids=list(result.chunk_ids),
            refs=list(result.refs),
            next=result.next,
            sweep_horizon=result.sweep_horizon,
            allocated_first=[first for first, _ in result.allocated],
            allocated_count=[count for _, count in result.allocated],
            next_chunk_id=result.next_chunk_id,
        )

    async def FetchGC(
        self, request: meta_pb2.FetchGCRequest, context: Any
    ) -> meta_pb2.FetchGCReply:
        limit = min(request.limit or MAX_PAGE, MAX_PAGE)
        result = await self.proposer.query(context, ops.FetchGC(limit))
        assert isinstance(result, GCResult)
        return meta_pb2.FetchGCReply(chunk_ids=list(result.chunk_ids))

    async def AckGC(self, request: meta_pb2.AckGCRequest, context: Any) -> common_pb2.Empty:
        if request.chunk_ids:
            await self.proposer.system_op(context, ops.AckGC(tuple(request.chunk_ids)))
        return common_pb2.Empty()
