"""The data-server half of the Admin service on the metadata leader: list the data
servers with their lifecycle figures, change a member's state or weight, remove an
emptied one, and price ring changes (ringplan.py).

Owns the rules for those changes. Every change is a proposed command, so it lands in
the replicated ring; the figures come from the leader's heartbeat bookkeeping
(dfs.meta.duties), so only the leader answers. A member is removed only when nothing
would be lost: a draining one once its last anti-entropy pass at the current epoch
left it no live chunk, an out one once every up member (and the out one itself, if
it still runs) has passed at the current epoch and none reports a chunk
under-replicated.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from dfs.admin.ringplan import PlanError, live_chunk_lengths, price_plan, proposed_config
from dfs.meta import ops
from dfs.meta.duties import DataServerSeen, LeaderDuties
from dfs.meta.proposer import Proposer
from dfs.meta.results import ErrnoResult
from dfs.meta.types import MemberState, Ring, RingMember
from dfs.placement.wire import config_from_fields
from dfs.rpc import admin_pb2

# A draining server's figures must be this fresh to prove it empty.
FRESH_HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


class DataAdmin:
    def __init__(self, proposer: Proposer, duties: LeaderDuties) -> None:
        self.proposer = proposer
        self.duties = duties

    def ring(self) -> Ring:
        return self.proposer.state.namespace.state.ring.ring()

    # -- figures -----------------------------------------------------------------------

    def data_list(self) -> admin_pb2.DataListReply:
        ring = self.ring()
        now = time.monotonic()
        reply = admin_pb2.DataListReply(
            ring_epoch=ring.epoch, replicas=ring.replicas,
            live_chunks=len(self.proposer.state.namespace.state.chunks.refs),
        )
        settled = True
        for member in ring.members:
            seen = self.duties.data_servers.get(member.id)
            info = admin_pb2.DataServerInfo(
                id=member.id, addr=member.addr, state=MemberState(member.state).name.lower(),
                weight=member.weight, domain=member.domain, heard_s_ago=-1.0,
            )
            if seen is not None:
                info.heard_s_ago = now - seen.last_heard
                info.capacity, info.used, info.chunks = seen.capacity, seen.used, seen.chunks
                info.under_replicated, info.lost = seen.under_replicated, seen.lost
                info.misplaced, info.pass_epoch = seen.misplaced, seen.pass_epoch
                info.live_held = seen.live_held
                reply.under_replicated += seen.under_replicated
                reply.lost += seen.lost
                reply.misplaced += seen.misplaced
            if member.state == MemberState.UP and (seen is None or seen.pass_epoch != ring.epoch):
                settled = False
            reply.servers.append(info)
        reply.settled = settled
        return reply

    # -- changes -----------------------------------------------------------------------

    async def set_state(self, context: object, member_id: int, state: MemberState) -> Outcome:
        member = self._member(member_id)
        if member is None:
            return Outcome(False, f"data server {member_id} is not in the ring")
        if member.state == state:
            return Outcome(True, f"data server {member_id} is already {state.name.lower()}")
        result = await self.proposer.system_op(context, ops.SetMemberState(member_id, state))
        return self._outcome(result, f"data server {member_id} is now {state.name.lower()}")

    async def set_weight(self, context: object, member_id: int, weight: int) -> Outcome:
        if self._member(member_id) is None:
            return Outcome(False, f"data server {member_id} is not in the ring")
        if weight <= 0:
            return Outcome(False, "weight must be > 0")
        result = await self.proposer.system_op(context, ops.SetMemberWeight(member_id, weight))
        return self._outcome(result, f"data server {member_id} has weight {weight}")

    async def remove(self, context: object, member_id: int) -> Outcome:
        member = self._member(member_id)
        if member is None:
            return Outcome(False, f"data server {member_id} is not in the ring")
        refusal = self.removal_refusal(member_id)
        if refusal:
            return Outcome(False, f"not removing data server {member_id}: {refusal}")
        result = await self.proposer.system_op(context, ops.RemoveMember(member_id))
        return self._outcome(result, f"data server {member_id} removed from the ring")

    def removal_refusal(self, member_id: int) -> str:
        """Why removing the member could lose data ("" when it cannot)."""
        ring = self.ring()
        member = next(m for m in ring.members if m.id == member_id)
        if member.state == MemberState.DRAINING:
            seen = self.duties.data_servers.get(member_id)
            if seen is None or time.monotonic() - seen.last_heard > FRESH_HEARTBEAT_S:
                return "it is not heartbeating; mark it out and let repair finish first"
            if seen.pass_epoch != ring.epoch:
                return (f"its last pass compared epoch {seen.pass_epoch}, "
                        f"the ring is at {ring.epoch}")
            if seen.live_held:
                return f"it still holds {seen.live_held} live chunks"
            return ""
        if member.state == MemberState.OUT:
            # Still running, it may hold the only copy of a chunk, which it pushes and
            # counts itself: then its own pass must be done too.
            seen = self.duties.data_servers.get(member_id)
            running = seen is not None and time.monotonic() - seen.last_heard <= FRESH_HEARTBEAT_S
            if running and seen is not None and (seen.pass_epoch != ring.epoch
                                                 or seen.under_replicated):
                return "it still runs and has not pushed everything it alone holds"
            return self._repair_unfinished(ring)
        return "drain it (or mark it out) first"

    def _repair_unfinished(self, ring: Ring) -> str:
        for other in ring.members:
            if other.state != MemberState.UP:
                continue
            seen: DataServerSeen | None = self.duties.data_servers.get(other.id)
            if seen is None or seen.pass_epoch != ring.epoch:
                return f"data server {other.id} has not finished a pass at epoch {ring.epoch}"
            if seen.under_replicated:
                return (f"data server {other.id} reports {seen.under_replicated} chunks "
                        "under-replicated")
        return ""

    async def plan(self, request: admin_pb2.RingPlanRequest) -> admin_pb2.RingPlanReply:
        """PlanError when the change makes no sense for the current ring."""
        current = config_from_fields(self.ring())
        proposed = proposed_config(current, request)
        lengths = await live_chunk_lengths(self.proposer.state.namespace.state)
        return await asyncio.to_thread(price_plan, current, proposed, lengths)

    def _member(self, member_id: int) -> RingMember | None:
        return next((m for m in self.ring().members if m.id == member_id), None)

    @staticmethod
    def _outcome(result: object, done: str) -> Outcome:
        if isinstance(result, ErrnoResult) and result.errno:
            return Outcome(False, f"refused (errno {result.errno})")
        return Outcome(True, done)


__all__ = ["DataAdmin", "Outcome", "PlanError"]
