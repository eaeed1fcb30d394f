"""Cluster identity: the shared-secret check on every RPC and optional mutual TLS.

Owns the secret file format, the server interceptor that refuses calls without
the secret, the client-side helpers that add it, and the TLS credentials of
servers and channels. Every dfs server and client uses these; none rolls its
own. The secret and private keys are never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import grpc.aio

log = logging.getLogger(__name__)

SECRET_METADATA_KEY = "x-dfs-secret"
# The standard health service stays open so load balancers and test harnesses
# can probe a server without the secret; it reveals nothing but SERVING.
EXEMPT_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
SECRET_FILE_NAME = "secret"
SECRET_BYTES = 32


class SecretError(Exception):
    """A secret file that is missing, unreadable, malformed or too open."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes of this process's certificate and key and of the cluster's CA.

    With TLS on, every connection is mutually authenticated: servers demand a
    client certificate signed by the CA, clients check the server's against it.
    """

    cert: bytes
    key: bytes
    ca: bytes

    def __repr__(self) -> str:
        return "TlsFiles(<certificate>, key=<hidden>, <ca>)"


@dataclass(frozen=True)
class ClusterSecret:
    """The identity of a cluster: the token every RPC must carry and, when the
    cluster runs mutual TLS, the certificates every connection is made with."""

    cluster_id: str
    token: str
    tls: TlsFiles | None = None

    def __repr__(self) -> str:  # never print the token, even by accident
        tls = ", tls" if self.tls else ""
        return f"ClusterSecret(cluster_id={self.cluster_id!r}, token=<hidden>{tls})"


def new_secret() -> ClusterSecret:
    return ClusterSecret(
        cluster_id=secrets.token_hex(8), token=secrets.token_hex(SECRET_BYTES)
    )


def write_secret(path: Path, secret: ClusterSecret) -> None:
    """Create `path` with mode 0600; refuses to overwrite an existing file."""
    text = f'cluster_id = "{secret.cluster_id}"\nsecret = "{secret.token}"\n'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_secret(path: Path) -> ClusterSecret:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as err:
        raise SecretError(f"cannot read secret file {path}: {err.strerror}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {path} is readable by others; chmod 600 it")
    try:
        fields = tomllib.loads(raw.decode())
        cluster_id, token = fields["cluster_id"], fields["secret"]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as err:
        raise SecretError(f"secret file {path} is malformed: {err}") from err
    if not isinstance(cluster_id, str) or not isinstance(token, str) or len(token) < 32:
        raise SecretError(f"secret file {path} is malformed: bad cluster_id or secret")
    return ClusterSecret(cluster_id=cluster_id, token=token)


def read_tls(cert_path: str | None, key_path: str | None, ca_path: str | None) -> TlsFiles | None:
    """`--tls-cert --tls-key --tls-ca`: all three, or none for plaintext."""
    given = [p for p in (cert_path, key_path, ca_path) if p]
    if not given:
        return None
    if len(given) != 3:
        raise SecretError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    assert cert_path and key_path and ca_path
    key_file = Path(key_path)
    try:
        if key_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"TLS key {key_path} is readable by others; chmod 600 it")
        files = TlsFiles(Path(cert_path).read_bytes(), key_file.read_bytes(),
                         Path(ca_path).read_bytes())
    except OSError as err:
        raise SecretError(f"cannot read {err.filename}: {err.strerror}") from err
    for name, pem in (("--tls-cert", files.cert), ("--tls-key", files.key), ("--tls-ca", files.ca)):
        if b"-----BEGIN " not in pem:
            raise SecretError(f"{name} is not a PEM file")
    return files


def secret_from_flags(
    secret_path: str | None, insecure: bool, tls: TlsFiles | None = None
) -> ClusterSecret | None:
    """The secret a server or client was told to use: `--secret FILE`, or none with
    `--insecure` (tests only). Exactly one of the two must be given. TLS comes on
    top of the secret, never instead of it."""
    if secret_path and insecure:
        raise SecretError("give --secret or --insecure, not both")
    if not secret_path and not insecure:
        raise SecretError("--secret FILE is required (or --insecure, for tests only)")
    if not secret_path:
        if tls is not None:
            raise SecretError("TLS needs the cluster secret too; give --secret FILE")
        return None
    secret = read_secret(Path(secret_path))
    return replace(secret, tls=tls) if tls else secret


def tls_from_args(args: Any, described: dict[str, str] | None = None) -> TlsFiles | None:
    """`--tls-*` flags, falling back to the "tls" paths of a cluster.json."""
    described = described or {}
    return read_tls(
        getattr(args, "tls_cert", None) or described.get("cert"),
        getattr(args, "tls_key", None) or described.get("key"),
        getattr(args, "tls_ca", None) or described.get("ca"),
    )


def secret_from_args(args: Any) -> ClusterSecret | None:
    """secret_from_flags for a parsed command line with the common server flags."""
    return secret_from_flags(args.secret, args.insecure, tls_from_args(args))


def init_cluster_dir(directory: Path) -> tuple[Path, ClusterSecret]:
    """`dfs init`: make DIR/secret with a new cluster id and secret."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SECRET_FILE_NAME
    secret = new_secret()
    try:
        write_secret(path, secret)
    except FileExistsError as err:
        raise SecretError(f"{path} already exists; refusing to replace a cluster secret") from err
    return path, secret


# ---------------------------------------------------------------- server side

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
UNAUTHENTICATED_MESSAGE = "missing or wrong cluster secret"


async def _refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


async def _refuse_streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    # A streaming response must come from an async generator, or grpc.aio
    # reports the abort as INTERNAL instead of UNAUTHENTICATED.
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
    yield  # never reached


def _refusing_handler(real: Handler | None) -> Handler:
    """A handler of the same shape as `real` that aborts with UNAUTHENTICATED."""
    if real is None:
        return grpc.unary_unary_rpc_method_handler(_refuse)
    serde = {
        "request_deserializer": real.request_deserializer,
        "response_serializer": real.response_serializer,
    }
    if real.request_streaming and real.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse_streaming, **serde)
    if real.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse, **serde)
    if real.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse_streaming, **serde)
    return grpc.unary_unary_rpc_method_handler(_refuse, **serde)


def presented_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == SECRET_METADATA_KEY:
            return value.encode() if isinstance(value, str) else value
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call that does not carry the cluster secret.

    `secret=None` is the explicit insecure mode (`--insecure`, tests only).
    """

    def __init__(self, secret: ClusterSecret | None) -> None:
        self._expected = secret.token.encode() if secret else None

    def accepts(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        if self._expected is None or method.startswith(EXEMPT_METHOD_PREFIXES):
            return True
        presented = presented_token(metadata)
        # compare_digest on equal-typed bytes runs in time independent of content.
        return presented is not None and hmac.compare_digest(presented, self._expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        if self.accepts(method, handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        log.debug("refused unauthenticated call to %s", method)
        return _refusing_handler(await continuation(handler_call_details))


# ---------------------------------------------------------------- client side


def secret_metadata(secret: ClusterSecret | None) -> tuple[tuple[str, str], ...]:
    return ((SECRET_METADATA_KEY, secret.token),) if secret else ()


def _with_secret_aio(
    details: grpc.aio.ClientCallDetails, extra: tuple[tuple[str, str], ...]
) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *extra)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _AioSecret:
    def __init__(self, secret: ClusterSecret) -> None:
        self._extra = secret_metadata(secret)


# grpc.aio files an interceptor under the first of the four kinds it is an
# instance of, so each kind needs an object of its own.
class _AioUnaryUnarySecret(_AioSecret, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_secret_aio(details, self._extra), request)


class _AioUnaryStreamSecret(_AioSecret, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_secret_aio(details, self._extra), request)


class _AioStreamUnarySecret(_AioSecret, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_secret_aio(details, self._extra), request_iterator)


class _AioStreamStreamSecret(_AioSecret, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_secret_aio(details, self._extra), request_iterator)


def aio_secret_interceptors(secret: ClusterSecret) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that add the cluster secret to every call on a grpc.aio channel."""
    return [
        _AioUnaryUnarySecret(secret),
        _AioUnaryStreamSecret(secret),
        _AioStreamUnarySecret(secret),
        _AioStreamStreamSecret(secret),
    ]


@dataclass(frozen=True)
class _SyncCallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class SyncSecretInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the cluster secret to every call on a synchronous channel (CLI tools)."""

    def __init__(self, secret: ClusterSecret) -> None:
        self._extra = secret_metadata(secret)

    def _details(self, details: Any) -> _SyncCallDetails:
        return _SyncCallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._extra),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Reconnect quickly: gRPC's default backoff (1 s growing to 120 s) would keep
    # a restarted replica or data server unreachable long after it is back. The
    # ceiling stays below the shortest election timeout (0.3 s), so a restarted
    # replica hears the leader before it would campaign; a refused attempt is cheap.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
]


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Mutual TLS: a client without a certificate signed by the CA never gets a call in."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
    )


def aio_channel(addr: str, secret: ClusterSecret | None) -> grpc.aio.Channel:
    """A grpc.aio channel to `addr` whose every call carries the secret (over TLS
    when the secret brings certificates)."""
    interceptors = aio_secret_interceptors(secret) if secret else None
    if secret is not None and secret.tls is not None:
        return grpc.aio.secure_channel(
            addr, channel_credentials(secret.tls), options=CHANNEL_OPTIONS,
            interceptors=interceptors,
        )
    return grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS, interceptors=interceptors)


def sync_channel(
    addr: str, secret: ClusterSecret | None, extra_options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A synchronous channel to `addr` whose every call carries the secret."""
    options = [*CHANNEL_OPTIONS, *extra_options]
    if secret is None:
        return grpc.insecure_channel(addr, options=options)
    if secret.tls is not None:
        channel = grpc.secure_channel(addr, channel_credentials(secret.tls), options=options)
    else:
        channel = grpc.insecure_channel(addr, options=options)
    return grpc.intercept_channel(channel, SyncSecretInterceptor(secret))
