"""The common shell of every dfs gRPC server: auth interceptor, health service, bind.

Servers add their own servicers; this module decides nothing about them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from dfs.auth import CHANNEL_OPTIONS, AuthInterceptor, ClusterSecret, server_credentials
from dfs.metrics.rpc import RpcMetricsInterceptor

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BindError(Exception):
    """The listen address could not be bound."""


class GrpcServer:
    """A grpc.aio server with the cluster-secret check and the health service,
    over mutual TLS when the secret brings certificates."""

    def __init__(self, listen: str, secret: ClusterSecret | None) -> None:
        self.listen = listen
        self.tls = secret.tls if secret else None
        self.health = HealthServicer()
        self.server = grpc.aio.server(
            # Metrics first, so refused calls are counted (as UNAUTHENTICATED) too.
            interceptors=[RpcMetricsInterceptor(), AuthInterceptor(secret)],
            options=CHANNEL_OPTIONS,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    def add(self, register: Registrar) -> None:
        register(self.server)

    async def start(self) -> None:
        try:
            if self.tls is not None:
                self.port = self.server.add_secure_port(self.listen, server_credentials(self.tls))
            else:
                self.port = self.server.add_insecure_port(self.listen)
        except RuntimeError as err:
            raise BindError(f"cannot listen on {self.listen}: {err}") from err
        await self.server.start()
        log.info("serving on %s%s", self.listen, " (mutual TLS)" if self.tls else "")

    async def set_serving(self, serving: bool) -> None:
        await self.health.set("", SERVING if serving else NOT_SERVING)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
