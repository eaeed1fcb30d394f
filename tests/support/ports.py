"""Free loopback ports for test servers."""

from __future__ import annotations

import socket
from contextlib import ExitStack

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports that were free a moment ago.

    All sockets are held open together so the kernel cannot hand out one port
    twice; a server started right after binds with SO_REUSEADDR semantics.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def free_addrs(count: int, host: str = LOOPBACK) -> list[str]:
    return [f"{host}:{port}" for port in free_ports(count, host)]
