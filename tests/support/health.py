"""Waiting for a server's standard gRPC health check to report SERVING."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class NotHealthy(Exception):
    """The server did not report SERVING in time (or died first)."""


def check_health(addr: str, timeout_s: float = 1.0) -> int | None:
    """The health status of `addr`, or None when it does not answer."""
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return None
        return int(reply.status)


def wait_healthy(
    addr: str, timeout_s: float = 20.0, still_alive: Callable[[], bool] = lambda: True
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not still_alive():
            raise NotHealthy(f"{addr}: the server exited before it was healthy")
        if check_health(addr, timeout_s=0.5) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.05)
    raise NotHealthy(f"{addr}: not SERVING after {timeout_s:.0f}s")
