"""The costs below every durable metadata operation, measured on this machine now.

A gRPC unary round trip over loopback through dfs's own server shell (cluster-secret
interceptor included) with the Admin service's Status message, and one 4 KiB append +
fsync in the benchmark's work directory: what a Paxos round must pay at least.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import grpc

from dfs.auth import aio_channel, new_secret
from dfs.rpc import admin_pb2, admin_pb2_grpc
from dfs.serving import GrpcServer

WARMUP_CALLS = 50
FSYNC_RECORD = b"w" * 4096
ADMIN_SERVICE = "dfs.v1.Admin"


async def _status(
    request: admin_pb2.StatusRequest, context: grpc.aio.ServicerContext[object, object]
) -> admin_pb2.StatusReply:
    return admin_pb2.StatusReply(version="bench-echo")


def _echo_handler() -> grpc.GenericRpcHandler:
    """Admin.Status answered by a trivial handler: the wire, not the work."""
    status = grpc.unary_unary_rpc_method_handler(
        _status,
        request_deserializer=admin_pb2.StatusRequest.FromString,
        response_serializer=admin_pb2.StatusReply.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {"Status": status})


async def _round_trips(calls: int) -> list[float]:
    secret = new_secret()
    server = GrpcServer("127.0.0.1:0", secret)
    server.server.add_generic_rpc_handlers((_echo_handler(),))
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{server.port}", secret) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            for _ in range(WARMUP_CALLS):
                await stub.Status(admin_pb2.StatusRequest())
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await stub.Status(admin_pb2.StatusRequest())
                samples.append(time.perf_counter() - started)
            return samples
    finally:
        await server.stop(grace_s=0)


def grpc_round_trip_s(calls: int) -> float:
    """Median seconds of one sequential unary call, client and server in this process."""
    return statistics.median(asyncio.run(_round_trips(calls)))


def fsync_s(directory: Path, appends: int) -> float:
    """Median seconds of appending 4 KiB to a file in `directory` and fsyncing it."""
    path = directory / "fsync-probe.wal"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    samples = []
    try:
        for _ in range(appends):
            started = time.perf_counter()
            os.write(fd, FSYNC_RECORD)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)
