"""The diagnostic key-value service: Put/Get/CAS through the metadata log, with
exactly-once sessions. Used by tests, the fault suite and the benchmarks.

Translates gRPC requests into session-wrapped KV commands and back; every
mutation goes through the log on the leader, every Get is a linearizable read.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from dfs.meta.replicated import MetaStateMachine, kv_payload, session_command
from dfs.paxos import kv, sessions
from dfs.paxos.grpc_errors import abort_not_leader, abort_stalled
from dfs.paxos.node import NotLeader, PaxosNode
from dfs.paxos.planted import PlantedBug
from dfs.rpc import meta_pb2, meta_pb2_grpc

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20


class KvService(meta_pb2_grpc.KvServicer):
    def __init__(
        self, node: PaxosNode, state: MetaStateMachine,
        planted: frozenset[PlantedBug] = frozenset(),
    ) -> None:
        self.node = node
        # Test-only (a planted bug): a leader reads as if its lease always held.
        self.unchecked_reads = PlantedBug.LEASE_READ_WITHOUT_LEASE in planted
        self.machine = state.kv
        self.table = state.sessions

    async def _propose(
        self, context: Any, command: sessions.SessionCommand
    ) -> sessions.SessionResult:
        try:
            raw = await self.node.propose(session_command(command))
        except NotLeader as err:
            await abort_not_leader(context, err.leader_addr)
        except TimeoutError:
            await abort_stalled(context)
        return sessions.decode_result(raw)

    async def OpenSession(
        self, request: meta_pb2.OpenSessionRequest, context: Any
    ) -> meta_pb2.OpenSessionReply:
        result = await self._propose(context, sessions.OpenSession(time.time_ns()))
        if result.status:
            return meta_pb2.OpenSessionReply(errno=result.status)
        return meta_pb2.OpenSessionReply(
            session=int.from_bytes(result.payload, "big"),
            timeout_ms=self.table.timeout_ns // 1_000_000,
        )

    async def KeepAlive(
        self, request: meta_pb2.KeepAliveRequest, context: Any
    ) -> meta_pb2.KeepAliveReply:
        result = await self._propose(context, sessions.KeepAlive(request.session, time.time_ns()))
        return meta_pb2.KeepAliveReply(errno=result.status)

    async def _mutate(
        self, request: meta_pb2.KvRequest, context: Any, command: kv.KvCommand
    ) -> meta_pb2.KvReply:
        await self._validate(request, context, mutation=True)
        ident = request.request
        result = await self._propose(
            context,
            sessions.SessionRequest(
                ident.session,
                ident.sequence,
                ident.acked,
                time.time_ns(),
                kv_payload(command),
            ),
        )
        if result.status:
            return meta_pb2.KvReply(errno=result.status)
        answer = kv.decode_result(result.payload)
        return meta_pb2.KvReply(ok=answer.ok, value=answer.value or b"")

    async def Put(self, request: meta_pb2.KvRequest, context: Any) -> meta_pb2.KvReply:
        return await self._mutate(request, context, kv.Put(request.key, request.value))

    async def Cas(self, request: meta_pb2.KvRequest, context: Any) -> meta_pb2.KvReply:
        expected = None if request.expect_absent else request.expected
        return await self._mutate(request, context, kv.Cas(request.key, expected, request.value))

    async def Get(self, request: meta_pb2.KvRequest, context: Any) -> meta_pb2.KvReply:
        await self._validate(request, context, mutation=False)
        try:
            if not (self.unchecked_reads and self.node.core.is_leader):
                await self.node.read_barrier()
        except NotLeader as err:
            await abort_not_leader(context, err.leader_addr)
        except TimeoutError:
            await abort_stalled(context)
        answer = kv.decode_result(self.machine.query(kv.encode_command(kv.Get(request.key))))
        return meta_pb2.KvReply(ok=answer.ok, value=answer.value or b"")

    async def _validate(self, request: meta_pb2.KvRequest, context: Any, mutation: bool) -> None:
        problem = None
        if not request.key or len(request.key) > MAX_KEY_BYTES:
            problem = f"key must be 1..{MAX_KEY_BYTES} bytes"
        elif len(request.value) > MAX_VALUE_BYTES:
            problem = f"value must be at most {MAX_VALUE_BYTES} bytes"
        elif mutation and (request.request.session == 0 or request.request.sequence == 0):
            problem = "a mutation needs a session and a sequence number > 0"
        elif mutation and request.request.acked >= request.request.sequence:
            problem = "acked must be below the request's own sequence number"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
