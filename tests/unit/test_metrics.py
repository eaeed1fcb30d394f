"""Metrics: the endpoint serves what prometheus_client's parser reads, the RPC
interceptor counts outcomes by code, FUSE operations are timed and their
errnos counted."""

from __future__ import annotations

import asyncio
import errno
import urllib.request

import pyfuse3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dfs.auth import aio_channel, new_secret
from dfs.metrics.endpoint import MetricsBindError, split_listen, start_metrics_endpoint
from dfs.metrics.fuse import instrument_operations
from dfs.rpc import paxos_pb2, paxos_pb2_grpc
from tests.support.prepare_server import prepare_server


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def endpoint_port() -> int:
    return start_metrics_endpoint("127.0.0.1:0")


def test_bad_metrics_addresses_are_refused() -> None:
    for bad in ("nohost", ":9", "host:port", "h:99999"):
        with pytest.raises(MetricsBindError, match="not HOST:PORT"):
            split_listen(bad)
    assert split_listen("[::1]:9100") == ("::1", 9100)


def test_rpc_outcomes_are_counted_by_code(endpoint_port: int) -> None:
    method = (("code", "OK"), ("method", "dfs.v1.Paxos/Prepare"))
    refused = (("code", "UNAUTHENTICATED"), ("method", "dfs.v1.Paxos/Prepare"))
    before = scrape(endpoint_port)

    async def scenario() -> None:
        secret = new_secret()
        async with prepare_server(secret) as addr:
            for client, calls in ((secret, 3), (None, 2)):
                async with aio_channel(addr, client) as channel:
                    stub = paxos_pb2_grpc.PaxosStub(channel)
                    for _ in range(calls):
                        try:
                            await stub.Prepare(paxos_pb2.PrepareRequest(), timeout=5)
                        except Exception:
                            assert client is None

    asyncio.run(scenario())
    after = scrape(endpoint_port)
    counted = "dfs_rpc_server_handled_total"
    assert after[(counted, method)] - before.get((counted, method), 0) == 3
    assert after[(counted, refused)] - before.get((counted, refused), 0) == 2
    timed = ("dfs_rpc_server_seconds_count", (("method", "dfs.v1.Paxos/Prepare"),))
    assert after[timed] - before.get(timed, 0) == 5
    # prometheus_client's process collector comes with every endpoint.
    assert ("process_resident_memory_bytes", ()) in after


def test_fuse_operations_are_timed_and_errnos_counted(endpoint_port: int) -> None:
    class Operations(pyfuse3.Operations):  # type: ignore[misc]
        async def getattr(self, inode: int, ctx: object = None) -> str:
            if inode == 0:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return "attributes"

    operations = instrument_operations(Operations())
    assert asyncio.run(operations.getattr(1)) == "attributes"
    with pytest.raises(pyfuse3.FUSEError):
        asyncio.run(operations.getattr(0))
    # Operations the class leaves to pyfuse3 stay untouched (and unmeasured).
    assert "readlink" not in vars(operations)
    after = scrape(endpoint_port)
    assert after[("dfs_fuse_op_seconds_count", (("op", "getattr"),))] >= 2
    enoent = (("errno", str(errno.ENOENT)), ("op", "getattr"))
    assert after[("dfs_fuse_op_errors_total", enoent)] >= 1
