"""The `--metrics HOST:PORT` endpoint: Prometheus text exposition over HTTP."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
_serving = False


class MetricsBindError(Exception):
    """The metrics address is malformed or cannot be bound."""


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise MetricsBindError(f"--metrics {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def start_metrics_endpoint(listen: str) -> int:
    """Serve the default registry at http://HOST:PORT/metrics from a daemon
    thread; returns the bound port (PORT may be 0)."""
    host, port = split_listen(listen)
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as err:
        raise MetricsBindError(f"cannot serve metrics on {listen}: {err.strerror}") from err
    global _serving
    _serving = True
    bound = int(server.server_port)
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound


def expose(collector: Collector) -> None:
    """Register a server's collector when this process serves metrics.

    Only a process's own server registers (tests run several in one process,
    and one registry cannot hold two families of the same name)."""
    if _serving:
        REGISTRY.register(collector)
