"""Client of the diagnostic KV service: exactly-once Put/CAS and linearizable Get
against the metadata group, surviving leader changes.

Used by `dfs admin kv`, the tests, the fault suite and the benchmarks.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Any

import grpc.aio

from dfs.auth import ClusterSecret
from dfs.client.retry import DEFAULT_POLICY, LeaderChannels, RetryPolicy
from dfs.client.session import ClientSession, SessionGrant
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc


class KvClient:
    def __init__(
        self,
        addrs: Iterable[str],
        secret: ClusterSecret | None,
        policy: RetryPolicy = DEFAULT_POLICY,
        client_name: str = "kv",
    ) -> None:
        self.channels = LeaderChannels(addrs, secret, policy)
        self.client_name = client_name
        self.session = ClientSession(self._open_session, self._keepalive)

    async def open(self) -> None:
        await self.session.open()

    async def close(self) -> None:
        await self.session.close()
        await self.channels.close()

    async def _open_session(self) -> SessionGrant:
        request = meta_pb2.OpenSessionRequest(client=f"{self.client_name}@{os.getpid()}")

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.KvStub(channel).OpenSession(request, timeout=timeout)

        reply = await self.channels.call(attempt)
        if reply.errno:
            raise OSError(reply.errno, f"open session: {os.strerror(reply.errno)}")
        return SessionGrant(reply.session, reply.timeout_ms)

    async def _keepalive(self, session: int, acked: int) -> int:
        request = meta_pb2.KeepAliveRequest(session=session, acked=acked)

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.KvStub(channel).KeepAlive(request, timeout=timeout)

        reply = await self.channels.call(attempt)
        return int(reply.errno)

    async def _mutate(self, method: str, request: meta_pb2.KvRequest) -> meta_pb2.KvReply:
        session, sequence, acked = self.session.next_request()
        request.request.CopyFrom(
            common_pb2.RequestId(session=session, sequence=sequence, acked=acked)
        )

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            # The same request (same sequence) on every retry: exactly once.
            return await getattr(meta_pb2_grpc.KvStub(channel), method)(request, timeout=timeout)

        reply: meta_pb2.KvReply = await self.channels.call(attempt)
        self.session.answered(session, sequence)
        if reply.errno == errno.ESTALE:
            await self.session.reopen(session)
        if reply.errno:
            raise OSError(reply.errno, f"kv {method.lower()}: {os.strerror(reply.errno)}")
        return reply

    async def put(self, key: bytes, value: bytes) -> None:
        await self._mutate("Put", meta_pb2.KvRequest(key=key, value=value))

    async def cas(
        self, key: bytes, expected: bytes | None, new: bytes
    ) -> tuple[bool, bytes | None]:
        """Set `key` to `new` if it holds `expected` (None: absent); (swapped, value found)."""
        request = meta_pb2.KvRequest(key=key, value=new, expected=expected or b"",
                                     expect_absent=expected is None)
        reply = await self._mutate("Cas", request)
        return reply.ok, (reply.value if not reply.ok else new)

    async def get(self, key: bytes) -> bytes | None:
        request = meta_pb2.KvRequest(key=key)

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.KvStub(channel).Get(request, timeout=timeout)

        reply = await self.channels.call(attempt)
        return bytes(reply.value) if reply.ok else None
