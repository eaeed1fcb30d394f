"""Per-method counts and latencies of every gRPC server, by status code."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

# Sub-millisecond buckets: a cached metadata read is ~0.1 ms, a durable commit
# a few ms, a stalled one seconds.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0)

RPC_SECONDS = Histogram(
    "dfs_rpc_server_seconds", "Time to answer a unary RPC, by method", ["method"],
    buckets=LATENCY_BUCKETS,
)
RPC_TOTAL = Counter(
    "dfs_rpc_server_handled_total", "RPCs answered, by method and status code",
    ["method", "code"],
)

# What the data servers move and the metadata log decides, counted where it happens.
CHUNK_BYTES = Counter(
    "dfs_data_bytes_total", "Chunk bytes stored (written) and served (read)", ["direction"],
)
COMMIT_SECONDS = Histogram(
    "dfs_paxos_commit_seconds", "Time from proposing a command to its result (chosen, "
    "durable on a quorum, applied)", buckets=LATENCY_BUCKETS,
)

Handler = Any  # grpc.RpcMethodHandler; its fields are untyped in the stubs


def _code(context: grpc.aio.ServicerContext[Any, Any], finished: bool) -> str:
    """The status the call ended with: set by abort/set_code, else OK when the
    handler returned and UNKNOWN when it raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if finished else "UNKNOWN"


def _timed_unary(method: str, behaviour: Callable[..., Awaitable[Any]]) -> Any:
    seconds = RPC_SECONDS.labels(method)

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        finished = False
        try:
            reply = await behaviour(request, context)
            finished = True
            return reply
        finally:
            seconds.observe(time.perf_counter() - started)
            RPC_TOTAL.labels(method, _code(context, finished)).inc()

    return handle


def _counted_stream(method: str, behaviour: Callable[..., AsyncIterator[Any]]) -> Any:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        finished = False
        try:
            async for reply in behaviour(request, context):
                yield reply
            finished = True
        finally:
            RPC_TOTAL.labels(method, _code(context, finished)).inc()

    return handle


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times unary calls and counts every call's outcome.

    Streams (Paxos peer links, snapshot transfer, chunk streams) are counted
    when they end; their duration says nothing about latency.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.lstrip("/")
        serde = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(method, handler.unary_unary), **serde)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _timed_unary(method, handler.stream_unary), **serde)
        if handler.unary_stream is not None and _is_async_gen(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _counted_stream(method, handler.unary_stream), **serde)
        if handler.stream_stream is not None and _is_async_gen(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                _counted_stream(method, handler.stream_stream), **serde)
        return handler  # a streaming handler that writes through context: left as is


def _is_async_gen(behaviour: Any) -> bool:
    return inspect.isasyncgenfunction(behaviour)  # bound methods included
