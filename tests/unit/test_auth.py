"""Secret files and the interceptor's accept rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dfs.auth import (
    SECRET_METADATA_KEY,
    AuthInterceptor,
    SecretError,
    init_cluster_dir,
    read_secret,
)


def test_init_writes_private_secret_and_reads_back(tmp_path: Path) -> None:
    path, secret = init_cluster_dir(tmp_path / "c")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_secret(path) == secret
    assert secret.token not in repr(secret)


def test_init_refuses_to_replace(tmp_path: Path) -> None:
    path, secret = init_cluster_dir(tmp_path)
    with pytest.raises(SecretError, match="already exists"):
        init_cluster_dir(tmp_path)
    assert read_secret(path) == secret


def test_two_clusters_differ(tmp_path: Path) -> None:
    _, a = init_cluster_dir(tmp_path / "a")
    _, b = init_cluster_dir(tmp_path / "b")
    assert a.cluster_id != b.cluster_id and a.token != b.token


@pytest.mark.parametrize(
    "content, mode, message",
    [
        ('cluster_id = "x"\nsecret = "' + "a" * 64 + '"\n', 0o644, "readable by others"),
        ("not toml [", 0o600, "malformed"),
        ('cluster_id = "x"\n', 0o600, "malformed"),
        ('cluster_id = "x"\nsecret = "short"\n', 0o600, "malformed"),
    ],
)
def test_bad_secret_files_are_refused(
    tmp_path: Path, content: str, mode: int, message: str
) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(SecretError, match=message):
        read_secret(path)


def test_missing_secret_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read"):
        read_secret(tmp_path / "nope")


def test_interceptor_accept_rule(tmp_path: Path) -> None:
    _, secret = init_cluster_dir(tmp_path)
    check = AuthInterceptor(secret)
    method = "/dfs.v1.Admin/Status"
    assert check.accepts(method, ((SECRET_METADATA_KEY, secret.token),))
    last = "1" if secret.token.endswith("0") else "0"
    assert not check.accepts(method, ((SECRET_METADATA_KEY, secret.token[:-1] + last),))
    assert not check.accepts(method, ())
    assert not check.accepts(method, None)
    assert check.accepts("/grpc.health.v1.Health/Check", ())
    assert AuthInterceptor(None).accepts(method, ())


def test_every_call_kind_carries_the_secret() -> None:
    """Unary and streaming calls alike pass the interceptor with the secret,
    and fail without it."""
    import asyncio

    import grpc

    from dfs.auth import aio_channel, new_secret
    from dfs.rpc import paxos_pb2, paxos_pb2_grpc
    from tests.support.prepare_server import prepare_server

    async def scenario() -> None:
        secret = new_secret()
        received: list[paxos_pb2.PeerMessage] = []

        async def messages():  # type: ignore[no-untyped-def]
            for node in range(3):
                yield paxos_pb2.PeerMessage(to=node)

        async with prepare_server(secret, received) as addr:
            for channel_secret, expect_ok in ((secret, True), (None, False)):
                async with aio_channel(addr, channel_secret) as channel:
                    stub = paxos_pb2_grpc.PaxosStub(channel)
                    try:
                        reply = await stub.Prepare(paxos_pb2.PrepareRequest(), timeout=5)
                        assert expect_ok and reply.promised
                    except grpc.aio.AioRpcError as err:
                        assert not expect_ok and err.code() == grpc.StatusCode.UNAUTHENTICATED
                    try:
                        async for _ in stub.Stream(messages(), timeout=5):
                            pass
                        assert expect_ok
                    except grpc.aio.AioRpcError as err:
                        # A refusal racing the client's writes surfaces as INTERNAL on
                        # the client; either way the server took no message (below).
                        assert not expect_ok and err.code() in (
                            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL)
        assert len(received) == 3

    asyncio.run(scenario())
