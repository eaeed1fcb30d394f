"""AdminService on metadata servers: status, metadata membership and snapshots, the
data servers' lifecycle (list, out, drain, remove, weight, ring plan) through
dfs.admin.data_admin, fsck (dfs.admin.fsck_service) and sessions
(dfs.admin.sessions_admin). Scrubs run on data servers, which answer ScrubStart
themselves."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from dfs import __version__
from dfs.admin.data_admin import DataAdmin, Outcome
from dfs.admin.fsck_service import FsckError, FsckRunner
from dfs.admin.sessions_admin import SessionAdmin
from dfs.meta import convert, ops
from dfs.meta.duties import LeaderDuties
from dfs.meta.proposer import Proposer
from dfs.meta.results import ErrnoResult, RingResult
from dfs.meta.types import MemberState
from dfs.paxos.grpc_errors import abort_not_leader
from dfs.paxos.node import NotLeader, PaxosNode
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2


class MetaAdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, node: PaxosNode, proposer: Proposer, cluster_id: str, addr: str,
                 duties: LeaderDuties) -> None:
        self.node = node
        self.proposer = proposer
        self.data = DataAdmin(proposer, duties)
        self.sessions = SessionAdmin(proposer, duties)
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

    async def DataDrain(
        self, request: admin_pb2.DataMemberRequest, context: Any
    ) -> admin_pb2.AdminReply:
        return self._reply(await self.data.set_state(context, request.id, MemberState.DRAINING))

    async def DataOut(
        self, request: admin_pb2.DataMemberRequest, context: Any
    ) -> admin_pb2.AdminReply:
        return self._reply(await self.data.set_state(context, request.id, MemberState.OUT))

    async def DataRemove(
        self, request: admin_pb2.DataMemberRequest, context: Any
    ) -> admin_pb2.AdminReply:
        await self._require_leader(context)
        return self._reply(await self.data.remove(context, request.id))

    async def DataWeight(
        self, request: admin_pb2.DataMemberRequest, context: Any
    ) -> admin_pb2.AdminReply:
        return self._reply(await self.data.set_weight(context, request.id, request.weight))

    async def DataList(self, request: Any, context: Any) -> admin_pb2.DataListReply:
        await self._require_leader(context)
        return self.data.data_list()

    async def RingPlan(
        self, request: admin_pb2.RingPlanRequest, context: Any
    ) -> admin_pb2.RingPlanReply:
        await self._require_leader(context)
        try:
            return await self.data.plan(request)
        except ValueError as err:  # PlanError, or a ring that would not validate
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise

    async def ScrubStart(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            "scrubs run on data servers: ask them (dfs admin scrub start)")
        raise AssertionError("abort returns only by raising")

    async def Fsck(
        self, request: admin_pb2.FsckRequest, context: Any
    ) -> AsyncIterator[admin_pb2.FsckUpdate]:
        await self._require_leader(context)
        try:
            async for update in FsckRunner(self.node, self.proposer).run(request, context):
                yield update
        except FsckError as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))

    async def SessionList(self, request: Any, context: Any) -> admin_pb2.SessionListReply:
        await self._require_leader(context)
        return self.sessions.list()

    async def SessionEvict(
        self, request: admin_pb2.SessionEvictRequest, context: Any
    ) -> admin_pb2.AdminReply:
        await self._require_leader(context)
        return await self.sessions.evict(context, request.id)

    async def Rebalance(self, request: Any, context: Any) -> admin_pb2.AdminReply:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            "rebalancing runs on data servers: ask them (dfs admin rebalance)")
        raise AssertionError("abort returns only by raising")

    async def _require_leader(self, context: Any) -> None:
        """The leader's heartbeat figures are the only ones kept: others refuse."""
        if not self.node.core.is_leader:
            await abort_not_leader(context, self.node.leader_addr())

    @staticmethod
    def _reply(outcome: Outcome) -> admin_pb2.AdminReply:
        return admin_pb2.AdminReply(ok=outcome.ok, message=outcome.message)

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
