"""Mutual TLS: the local CA, the flags, and who gets a call through."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from dfs.auth import (
    ClusterSecret,
    SecretError,
    TlsFiles,
    aio_channel,
    new_secret,
    read_tls,
    secret_from_flags,
)
from dfs.rpc import paxos_pb2, paxos_pb2_grpc
from dfs.tlsca import CaError, IssuedPair, issue, make_ca
from tests.support.prepare_server import prepare_server


def tls_of(ca: Path, pair: IssuedPair) -> TlsFiles:
    return TlsFiles(pair.cert.read_bytes(), pair.key.read_bytes(), (ca / "ca.pem").read_bytes())


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ours, theirs = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("theirs")
    for ca in (ours, theirs):
        make_ca(ca)
        issue(ca, "node", ["127.0.0.1", "localhost"])
    issue(ours, "elsewhere", ["10.9.9.9"])
    return ours, theirs


def test_ca_keys_are_private_and_ca_is_not_replaced(two_cas: tuple[Path, Path]) -> None:
    ours, _ = two_cas
    for key in ("ca.key", "node.key"):
        assert (ours / key).stat().st_mode & 0o777 == 0o600
    before = (ours / "ca.pem").read_bytes()
    with pytest.raises(CaError, match="already holds a CA"):
        make_ca(ours)
    assert (ours / "ca.pem").read_bytes() == before


def test_tls_flags_need_all_three_and_the_secret(
    two_cas: tuple[Path, Path], tmp_path: Path
) -> None:
    ours, _ = two_cas
    cert, key, ca = str(ours / "node.pem"), str(ours / "node.key"), str(ours / "ca.pem")
    assert read_tls(None, None, None) is None
    with pytest.raises(SecretError, match="all of"):
        read_tls(cert, None, ca)
    with pytest.raises(SecretError, match="not a PEM"):
        read_tls(cert, key, str(ours / "ca.srl"))
    tls = read_tls(cert, key, ca)
    with pytest.raises(SecretError, match="needs the cluster secret"):
        secret_from_flags(None, True, tls)
    open_key = tmp_path / "open.key"
    open_key.write_bytes((ours / "node.key").read_bytes())
    os.chmod(open_key, 0o644)
    with pytest.raises(SecretError, match="readable by others"):
        read_tls(cert, str(open_key), ca)
    assert "PRIVATE" not in repr(tls)


def test_only_clients_with_our_ca_and_the_secret_get_through(two_cas: tuple[Path, Path]) -> None:
    ours, theirs = two_cas

    async def scenario() -> dict[str, grpc.StatusCode]:
        node = IssuedPair(ours / "node.pem", ours / "node.key")
        secret = replace(new_secret(), tls=tls_of(ours, node))
        async with prepare_server(secret) as addr:
            return await outcomes(addr, secret)

    async def outcomes(addr: str, secret: ClusterSecret) -> dict[str, grpc.StatusCode]:
        clients = {
            "ours": secret,
            "plaintext": replace(secret, tls=None),
            "other CA": replace(secret, tls=tls_of(theirs, IssuedPair(theirs / "node.pem",
                                                                      theirs / "node.key"))),
            # Signed by our CA for another host: a client certificate only proves membership.
            "another host": replace(secret, tls=tls_of(ours, IssuedPair(ours / "elsewhere.pem",
                                                                      ours / "elsewhere.key"))),
            "no secret": replace(new_secret(), tls=secret.tls),
        }
        outcome: dict[str, grpc.StatusCode] = {}
        for name, client in clients.items():
            async with aio_channel(addr, client) as channel:
                try:
                    reply = await paxos_pb2_grpc.PaxosStub(channel).Prepare(
                        paxos_pb2.PrepareRequest(), timeout=5)
                    assert reply.promised
                    outcome[name] = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as err:
                    outcome[name] = err.code()
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome["ours"] == grpc.StatusCode.OK
    assert outcome["no secret"] == grpc.StatusCode.UNAUTHENTICATED
    for refused in ("plaintext", "other CA"):
        assert outcome[refused] == grpc.StatusCode.UNAVAILABLE, outcome
    # Any certificate of our CA admits a client: the host name is checked on the
    # server's certificate, which is valid for 127.0.0.1.
    assert outcome["another host"] == grpc.StatusCode.OK
