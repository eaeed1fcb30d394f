"""A throwaway gRPC server for fixture tests: the common server shell
(auth interceptor + health) serving Admin.Status, until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

from dfs import __version__
from dfs.auth import read_secret
from dfs.logs import setup_logging
from dfs.rpc import admin_pb2, admin_pb2_grpc
from dfs.serving import GrpcServer

log = logging.getLogger("throwaway")


class StatusOnly(admin_pb2_grpc.AdminServicer):
    def __init__(self, cluster_id: str, addr: str) -> None:
        self.cluster_id, self.addr, self.started = cluster_id, addr, time.monotonic()

    async def Status(self, request: Any, context: Any) -> admin_pb2.StatusReply:
        return admin_pb2.StatusReply(
            id=7, cluster_id=self.cluster_id, version=__version__, addr=self.addr,
            uptime_s=time.monotonic() - self.started,
        )


async def serve(listen: str, secret_path: Path) -> None:
    secret = read_secret(secret_path)
    server = GrpcServer(listen, secret)
    server.add(lambda s: admin_pb2_grpc.add_AdminServicer_to_server(
        StatusOnly(secret.cluster_id, listen), s))
    await server.start()
    await server.set_serving(True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    log.info("SIGTERM: stopping")
    await server.stop(grace_s=1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--secret", required=True, type=Path)
    args = parser.parse_args()
    setup_logging("INFO", "throwaway")
    asyncio.run(serve(args.listen, args.secret))


if __name__ == "__main__":
    main()
