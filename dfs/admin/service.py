"""AdminService on metadata servers: status now; membership, snapshots and data
operations as later issues add them (they answer UNIMPLEMENTED until then)."""

from __future__ import annotations

import time
from typing import Any

import grpc

from dfs import __version__
from dfs.meta import convert, ops
from dfs.meta.proposer import Proposer
from dfs.meta.results import ErrnoResult, RingResult
from dfs.paxos.node import NotLeader, PaxosNode
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2


class MetaAdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, node: PaxosNode, proposer: Proposer, cluster_id: str, addr: str) -> None:
        self.node = node
        self.proposer = proposer
        self.cluster_id = cluster_id
        self.addr = addr
        self.started = time.monotonic()

    async def Status(self, request: admin_pb2.StatusRequest, context: Any) -> admin_pb2.StatusReply:
        status = self.node.status()
        config = status.config
        return admin_pb2.StatusReply(
            kind=admin_pb2.SERVER_KIND_META,
            id=self.node.node_id,
            cluster_id=self.cluster_id,
            version=__version__,
            addr=self.addr,
            uptime_s=time.monotonic() - self.started,
            meta=admin_pb2.MetaStatus(
                role=status.role.value if self.node.node_id in config.member_ids else "learner",
                ballot_round=status.ballot.round,
                ballot_node=status.ballot.node,
                chosen=status.chosen_upto,
                applied=self.node.applied_upto,
                lease_ms=int(status.lease_left * 1000),
                leader_id=status.leader_id or 0,
                voters=dict(config.voters),
                learners=dict(config.learners),
                snapshot_slot=self.node.snapshot_slot,
                wal_fsyncs=self.node.wal.fsync_count,
                wal_bytes=self.node.wal.size_bytes(),
                commands_applied=self.node.commands_applied,
                state_digest=self.node.state_digest() if request.state_digest else 0,
            ),
        )

    async def _not_yet(self, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not available yet")

    def _not_leader(self) -> admin_pb2.AdminReply | None:
        if self.node.core.is_leader:
            return None
        return admin_pb2.AdminReply(
            ok=False, message=f"not the leader; leader is {self.node.leader_addr() or 'unknown'}"
        )

    async def MetaAdd(
        self, request: admin_pb2.MembershipRequest, context: Any
    ) -> admin_pb2.AdminReply:
        if (refusal := self._not_leader()) is not None:
            return refusal
        if request.id == 0 or ":" not in request.addr:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "add needs ID and HOST:PORT")
        try:
            return admin_pb2.AdminReply(
                ok=True, message=await self.node.add_member(request.id, request.addr)
            )
        except (ValueError, NotLeader, TimeoutError) as err:
            return admin_pb2.AdminReply(ok=False, message=str(err))

    async def MetaRemove(
        self, request: admin_pb2.MembershipRequest, context: Any
    ) -> admin_pb2.AdminReply:
        if (refusal := self._not_leader()) is not None:
            return refusal
        try:
            message = await self.node.remove_member(request.id)
        except (ValueError, NotLeader, TimeoutError) as err:
            return admin_pb2.AdminReply(ok=False, message=str(err))
        return admin_pb2.AdminReply(
            ok="removed" in message or "not a member" in message, message=message
        )

    async def MetaTransferLeader(
        self, request: admin_pb2.TransferLeaderRequest, context: Any
    ) -> admin_pb2.AdminReply:
        if not self.node.core.is_leader:
            return admin_pb2.AdminReply(ok=False, message="not the leader")
        done = self.node.transfer_leadership(request.id)
        return admin_pb2.AdminReply(ok=done, message="transfer started" if done else "refused")

    async def MetaSnapshot(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        if self.node.request_snapshot():
            return admin_pb2.AdminReply(
                ok=True, message=f"snapshot started at slot {self.node.applied_upto}"
            )
        return admin_pb2.AdminReply(
            ok=False,
            message="a snapshot is already being taken, or nothing was applied since the last one",
        )

    async def DataDrain(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        return await self._not_yet(context)  # type: ignore[no-any-return]

    async def DataOut(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        return await self._not_yet(context)  # type: ignore[no-any-return]

    async def DataRemove(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        return await self._not_yet(context)  # type: ignore[no-any-return]

    async def DataWeight(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        return await self._not_yet(context)  # type: ignore[no-any-return]

    async def RingShow(self, request: Any, context: Any) -> common_pb2.Ring:
        result = await self.proposer.query(context, ops.GetRing())
        assert isinstance(result, RingResult)
        return convert.ring_to_pb(result.ring)

    async def RingSetReplication(
        self, request: admin_pb2.ReplicationRequest, context: Any
    ) -> admin_pb2.AdminReply:
        current = self.proposer.state.namespace.state.ring.ring()
        min_replicas = request.min_replicas or request.replicas
        result = await self.proposer.system_op(
            context, ops.SetReplication(request.replicas, min_replicas, current.vnodes_per_weight)
        )
        if isinstance(result, ErrnoResult) and result.errno:
            return admin_pb2.AdminReply(
                ok=False,
                message=f"refused: need 1 <= min_replicas <= replicas "
                f"(got {request.replicas}, {min_replicas})",
            )
        return admin_pb2.AdminReply(
            ok=True, message=f"replicas={request.replicas} min_replicas={min_replicas}"
        )
