"""An in-process gRPC server through the common shell (auth, metrics, TLS) that
answers Paxos Prepare with a promise and takes peer-stream messages: enough to
test who gets a call through, without a replica behind it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dfs.auth import ClusterSecret
from dfs.paxos.transport import PaxosService
from dfs.rpc import paxos_pb2, paxos_pb2_grpc
from dfs.serving import GrpcServer


@contextlib.asynccontextmanager
async def prepare_server(
    secret: ClusterSecret | None, received: list[paxos_pb2.PeerMessage] | None = None
) -> AsyncIterator[str]:
    """Yields the server's address; stream messages land in `received`."""

    async def on_prepare(request: paxos_pb2.PrepareRequest) -> paxos_pb2.PrepareReply:
        return paxos_pb2.PrepareReply(promised=True)

    server = GrpcServer("127.0.0.1:0", secret)
    sink = received.append if received is not None else (lambda message: None)
    service = PaxosService(sink, on_prepare)
    server.add(lambda s: paxos_pb2_grpc.add_PaxosServicer_to_server(service, s))
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)
