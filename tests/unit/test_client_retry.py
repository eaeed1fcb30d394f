"""Leader discovery, redirects and retries against real in-process gRPC servers,
and the session's sequence/watermark bookkeeping."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from dfs.client.leader import LEADER_METADATA_KEY, LeaderTracker
from dfs.client.retry import LeaderChannels, LeaderUnavailable, RetryPolicy
from dfs.client.session import ClientSession, SessionGrant
from dfs.rpc import meta_pb2, meta_pb2_grpc
from dfs.serving import GrpcServer


class FakeKvMember(meta_pb2_grpc.KvServicer):
    """Leads or redirects, as a metadata replica would."""

    def __init__(self, cluster: dict[str, Any]) -> None:
        self.cluster = cluster
        self.addr = ""
        self.seen: list[tuple[int, int]] = []
        self.stopped = False  # as if SIGSTOPped: takes calls in, never answers

    async def Put(self, request: Any, context: Any) -> meta_pb2.KvReply:
        if self.stopped:
            await asyncio.Event().wait()
        leader = self.cluster.get("leader")
        if leader != self.addr:
            context.set_trailing_metadata(((LEADER_METADATA_KEY, leader or ""),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leader")
        self.seen.append((request.request.session, request.request.sequence))
        return meta_pb2.KvReply(ok=True, value=request.value)


async def start_members(
    count: int, cluster: dict[str, Any]
) -> list[tuple[GrpcServer, FakeKvMember]]:
    members = []
    for _ in range(count):
        member = FakeKvMember(cluster)
        server = GrpcServer("127.0.0.1:0", None)
        server.add(lambda s, m=member: meta_pb2_grpc.add_KvServicer_to_server(m, s))
        await server.start()
        member.addr = f"127.0.0.1:{server.port}"
        members.append((server, member))
    return members


def put_attempt(value: bytes, session: int = 1, sequence: int = 1):  # type: ignore[no-untyped-def]
    request = meta_pb2.KvRequest(
        request={"session": session, "sequence": sequence}, key=b"k", value=value
    )

    async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
        return await meta_pb2_grpc.KvStub(channel).Put(request, timeout=timeout)

    return attempt


def test_redirect_then_failover_to_the_new_leader() -> None:
    async def scenario() -> None:
        cluster: dict[str, Any] = {}
        members = await start_members(3, cluster)
        (_, m0), (_, m1), (s2, m2) = members
        cluster["leader"] = m2.addr
        channels = LeaderChannels([m0.addr, m1.addr, m2.addr], None,
                                  RetryPolicy(deadline_s=10, attempt_timeout_s=1))
        reply = await channels.call(put_attempt(b"v1"))
        assert reply.value == b"v1" and m2.seen == [(1, 1)]
        assert channels.tracker.current() == m2.addr

        # The leader dies; m1 takes over. The same request (same sequence) is retried.
        await s2.stop(0)
        cluster["leader"] = m1.addr
        reply = await channels.call(put_attempt(b"v2", sequence=2))
        assert reply.value == b"v2" and m1.seen == [(1, 2)]

        # Nobody leads: the call gives up at its deadline with a clear error.
        cluster["leader"] = None
        with pytest.raises(LeaderUnavailable, match="no metadata leader"):
            await channels.call(put_attempt(b"v3"), deadline_s=0.5)
        await channels.close()
        for server, _ in members[:2]:
            await server.stop(0)

    asyncio.run(scenario())


def test_a_stopped_leader_is_left_for_the_one_the_others_follow() -> None:
    async def scenario() -> None:
        cluster: dict[str, Any] = {}
        members = await start_members(3, cluster)
        (_, old), (_, m1), (_, new) = members
        cluster["leader"] = old.addr
        # One attempt could wait out the whole deadline: only asking the others helps.
        policy = RetryPolicy(deadline_s=20, attempt_timeout_s=20)
        channels = LeaderChannels([old.addr, m1.addr, new.addr], None, policy)
        old.stopped = True
        # The others elect `new` a little later; until then they still name `old`.
        asyncio.get_running_loop().call_later(0.7, cluster.update, {"leader": new.addr})
        reply = await channels.call(put_attempt(b"v1"))
        assert reply.value == b"v1" and new.seen == [(1, 1)] and m1.seen == []
        assert channels.tracker.current() == new.addr
        await channels.close()
        for server, _ in members:
            await server.stop(0)

    asyncio.run(scenario())


def test_non_retryable_errors_surface_at_once() -> None:
    async def scenario() -> None:
        cluster: dict[str, Any] = {}
        ((server, member),) = await start_members(1, cluster)
        cluster["leader"] = member.addr
        channels = LeaderChannels([member.addr], None)

        async def bad(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.KvStub(channel).Cas(meta_pb2.KvRequest(), timeout=timeout)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channels.call(bad)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await channels.close()
        await server.stop(0)

    asyncio.run(scenario())


def test_tracker_learns_new_members() -> None:
    tracker = LeaderTracker(["a:1", "b:2", "a:1"])
    assert tracker.members == ["a:1", "b:2"]
    tracker.follow("c:3")
    assert tracker.current() == "c:3" and tracker.members == ["a:1", "b:2", "c:3"]
    tracker.skip("c:3")
    assert tracker.current() == "a:1"
    with pytest.raises(ValueError):
        LeaderTracker([" "])


def test_session_watermark_advances_over_contiguous_answers() -> None:
    async def scenario() -> None:
        async def open_fn() -> SessionGrant:
            return SessionGrant(session=42, timeout_ms=60_000)

        async def keepalive_fn(session: int, acked: int) -> int:
            return 0

        session = ClientSession(open_fn, keepalive_fn)
        await session.open()
        requests = [session.next_request() for _ in range(5)]
        assert [r[1] for r in requests] == [1, 2, 3, 4, 5]
        assert all(r[0] == 42 and r[2] == 0 for r in requests)
        session.answered(42, 2)
        session.answered(42, 3)
        assert session.acked == 0  # 1 is still in flight
        session.answered(42, 1)
        assert session.acked == 3
        session.answered(42, 5)
        assert session.acked == 3
        session.answered(41, 4)  # an answer from an older session changes nothing
        assert session.acked == 3
        session.answered(42, 4)
        assert session.acked == 5
        assert session.next_request() == (42, 6, 5)
        await session.close()

    asyncio.run(scenario())


def test_session_reopens_after_estale() -> None:
    import errno

    async def scenario() -> None:
        grants = iter([SessionGrant(1, 300), SessionGrant(2, 300)])
        reopened = asyncio.Event()

        async def open_fn() -> SessionGrant:
            grant = next(grants)
            if grant.session == 2:
                reopened.set()
            return grant

        async def keepalive_fn(session: int, acked: int) -> int:
            return errno.ESTALE if session == 1 else 0

        session = ClientSession(open_fn, keepalive_fn)
        await session.open()
        await asyncio.wait_for(reopened.wait(), timeout=5)
        assert session.session == 2 and session.next_request() == (2, 1, 0)
        await session.close()

    asyncio.run(scenario())
