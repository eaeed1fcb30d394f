"""Latency and errors of every FUSE operation of a mount, by operation."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3
from prometheus_client import Counter, Histogram

from dfs.metrics.rpc import LATENCY_BUCKETS

FUSE_SECONDS = Histogram(
    "dfs_fuse_op_seconds", "Time to answer a FUSE request, by operation", ["op"],
    buckets=LATENCY_BUCKETS,
)
FUSE_ERRORS = Counter(
    "dfs_fuse_op_errors_total", "FUSE requests answered with an errno, by operation and errno",
    ["op", "errno"],
)

# The pyfuse3 operations a mount serves; others keep pyfuse3's ENOSYS default.
TIMED_OPERATIONS = (
    "lookup", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
    "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync",
    "opendir", "readdir", "releasedir", "fsyncdir", "statfs", "create", "access",
    "getxattr", "setxattr", "listxattr", "removexattr", "forget",
)


def _timed(name: str, operation: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    seconds = FUSE_SECONDS.labels(name)

    @functools.wraps(operation)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await operation(*args, **kwargs)
        except Exception as err:  # pyfuse3.FUSEError: an errno for the kernel
            FUSE_ERRORS.labels(name, str(getattr(err, "errno", "exception"))).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    return timed


def instrument_operations(operations: Any) -> Any:
    """Time every operation `operations` defines, in place (pyfuse3 looks the
    methods up on the instance, so instance attributes take precedence)."""
    for name in TIMED_OPERATIONS:
        if getattr(type(operations), name, None) is not getattr(pyfuse3.Operations, name, None):
            setattr(operations, name, _timed(name, getattr(operations, name)))
    return operations
