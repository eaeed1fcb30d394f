"""A pool of gRPC channels to data servers, one per address, opened on first use.

Shared by the client's chunk I/O and by data servers talking to their peers
(chain forwarding, repair, GC); every channel carries the cluster secret.
"""

from __future__ import annotations

import grpc.aio

from dfs.auth import ClusterSecret, aio_channel
from dfs.rpc import data_pb2_grpc

CALL_TIMEOUT_S = 30.0  # one chunk call: 4 MiB over loopback takes milliseconds


class DataStubPool:
    def __init__(self, secret: ClusterSecret | None, call_timeout_s: float = CALL_TIMEOUT_S):
        self._secret = secret
        self.call_timeout_s = call_timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, addr: str) -> data_pb2_grpc.DataAsyncStub:
        channel = self._channels.get(addr)
        if channel is None:
            channel = self._channels[addr] = aio_channel(addr, self._secret)
        return data_pb2_grpc.DataStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
