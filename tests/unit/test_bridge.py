"""trio awaiting grpc.aio calls through the bridge: results, errors, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
import trio

from dfs.client.bridge import AsyncioBridge
from dfs.rpc import admin_pb2, admin_pb2_grpc
from dfs.serving import GrpcServer


class SlowStatus(admin_pb2_grpc.AdminServicer):
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.calls = 0

    async def Status(self, request: Any, context: Any) -> admin_pb2.StatusReply:
        self.calls += 1
        if self.calls == 1:
            return admin_pb2.StatusReply(id=1)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return admin_pb2.StatusReply(id=2)


@pytest.fixture
def bridge():  # type: ignore[no-untyped-def]
    b = AsyncioBridge()
    yield b
    b.close()


def test_trio_awaits_grpc_and_cancellation_reaches_the_server(bridge: AsyncioBridge) -> None:
    servicer = SlowStatus()

    async def start() -> tuple[GrpcServer, grpc.aio.Channel]:
        server = GrpcServer("127.0.0.1:0", None)
        server.add(lambda s: admin_pb2_grpc.add_AdminServicer_to_server(servicer, s))
        await server.start()
        return server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")

    server, channel = bridge.run_sync(start(), timeout_s=10)
    stub = admin_pb2_grpc.AdminStub(channel)

    async def trio_main() -> None:
        reply = await bridge.call(lambda: stub.Status(admin_pb2.StatusRequest(), timeout=5))
        assert reply.id == 1
        with trio.move_on_after(0.3) as scope:
            await bridge.call(lambda: stub.Status(admin_pb2.StatusRequest(), timeout=20))
        assert scope.cancelled_caught

    trio.run(trio_main)

    async def wait_cancelled() -> None:
        await asyncio.wait_for(servicer.cancelled.wait(), timeout=5)

    bridge.run_sync(wait_cancelled(), timeout_s=10)  # the server saw the call cancelled
    bridge.run_sync(channel.close(), timeout_s=5)
    bridge.run_sync(server.stop(0), timeout_s=5)


def test_errors_propagate_to_trio(bridge: AsyncioBridge) -> None:
    async def boom() -> None:
        raise ValueError("from the loop thread")

    async def trio_main() -> None:
        with pytest.raises(ValueError, match="loop thread"):
            await bridge.call(boom)

    trio.run(trio_main)


def test_many_concurrent_calls_complete(bridge: AsyncioBridge) -> None:
    async def echo(i: int) -> int:
        await asyncio.sleep(0.001)
        return i

    results: list[int] = []

    async def trio_main() -> None:
        async def one(i: int) -> None:
            results.append(await bridge.call(lambda: echo(i)))

        async with trio.open_nursery() as nursery:
            for i in range(500):
                nursery.start_soon(one, i)

    trio.run(trio_main)
    assert sorted(results) == list(range(500))
