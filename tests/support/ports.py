"""Free loopback ports for test servers (free_ports comes from dfs up's own helper)."""

from __future__ import annotations

from dfs.localcluster import free_ports

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def free_addrs(count: int, host: str = LOOPBACK) -> list[str]:
    return [f"{host}:{port}" for port in free_ports(count, host)]
