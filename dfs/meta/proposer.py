"""Putting namespace operations through the log from a gRPC handler: session
commands for clients' mutations, system commands for the leader's own, and
linearizable reads. Turns leadership loss and stalls into the wire's answers
(UNAVAILABLE + the leader's address) so clients retry at the right replica."""

from __future__ import annotations

import time
from typing import Any

import grpc

from dfs.meta import codec as ns_codec
from dfs.meta.ops import Command, Query
from dfs.meta.replicated import MetaStateMachine, ns_payload, session_command, system_command
from dfs.meta.results import ErrnoResult, Result
from dfs.metrics.rpc import COMMIT_SECONDS
from dfs.paxos import sessions
from dfs.paxos.grpc_errors import abort_not_leader, abort_stalled
from dfs.paxos.node import NotLeader, PaxosNode
from dfs.rpc import common_pb2


class Proposer:
    def __init__(self, node: PaxosNode, state: MetaStateMachine) -> None:
        self.node = node
        self.state = state

    async def propose(self, context: Any, command: bytes) -> bytes:
        try:
            with COMMIT_SECONDS.time():
                return await self.node.propose(command)
        except NotLeader as err:
            await abort_not_leader(context, err.leader_addr)
        except TimeoutError:
            await abort_stalled(context)

    async def session(
        self, context: Any, command: sessions.SessionCommand
    ) -> sessions.SessionResult:
        return sessions.decode_result(await self.propose(context, session_command(command)))

    async def client_op(
        self, context: Any, request_id: common_pb2.RequestId, op: Command
    ) -> Result:
        """A client's mutation, exactly once for its (session, sequence)."""
        await require_request_id(context, request_id)
        outcome = await self.session(
            context,
            sessions.SessionRequest(
                request_id.session,
                request_id.sequence,
                request_id.acked,
                time.time_ns(),
                ns_payload(op),
            ),
        )
        if outcome.status:
            return ErrnoResult(outcome.status)
        return ns_codec.decode_result(outcome.payload)

    async def system_op(self, context: Any, op: Command) -> Result:
        return ns_codec.decode_result(await self.propose(context, system_command(op)))

    async def query(self, context: Any, query: Query) -> Result:
        """A linearizable read: every write acknowledged before it is visible."""
        try:
            await self.node.read_barrier()
        except NotLeader as err:
            await abort_not_leader(context, err.leader_addr)
        except TimeoutError:
            await abort_stalled(context)
        return self.state.namespace.query(query)

    async def query_together(self, context: Any, queries: list[Query]) -> list[Result]:
        """Linearizable reads answered from one state: no command applies between them."""
        first = await self.query(context, queries[0])
        return [first, *(self.state.namespace.query(q) for q in queries[1:])]


async def invalid(context: Any, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


async def require_request_id(context: Any, request_id: common_pb2.RequestId) -> None:
    if request_id.session == 0 or request_id.sequence == 0:
        await invalid(context, "a mutation needs request.session and request.sequence > 0")
    if request_id.acked >= request_id.sequence:
        await invalid(context, "request.acked must be below request.sequence")


def errno_of(result: Result) -> int:
    return int(getattr(result, "errno", 0))
