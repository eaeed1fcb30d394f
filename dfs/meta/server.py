"""The `dfs meta` process: one metadata replica serving the Paxos, KV and admin
services on one address until SIGTERM.

Owns process lifecycle only: flags, secret, data-dir identity, bootstrap,
wiring of services to the node, health, and a graceful stop that lets
in-flight writes finish. Protocol and state live in dfs/paxos and dfs/meta.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from dfs.auth import ClusterSecret, SecretError, secret_from_args, sync_channel
from dfs.config import ConfigError, require
from dfs.datadir import INSECURE_CLUSTER_ID, DataDirError, Identity, claim
from dfs.logs import setup_logging
from dfs.meta.cluster_service import ClusterService
from dfs.meta.duties import DutyTimes, LeaderDuties
from dfs.meta.kv_service import KvService
from dfs.meta.meta_service import MetaService
from dfs.meta.proposer import Proposer
from dfs.meta.replicated import MetaStateMachine
from dfs.metrics.collectors import PaxosCollector
from dfs.metrics.endpoint import MetricsBindError, expose, start_metrics_endpoint
from dfs.paxos.config import Config
from dfs.paxos.node import (
    BOOTSTRAP_FILE,
    BootstrapError,
    NodeOptions,
    PaxosNode,
    load_bootstrap,
)
from dfs.paxos.planted import planted_from_env
from dfs.paxos.wire import config_from_pb
from dfs.rpc import admin_pb2_grpc, meta_pb2_grpc, paxos_pb2, paxos_pb2_grpc
from dfs.serving import BindError, GrpcServer

log = logging.getLogger("dfs.meta")

STOP_GRACE_S = 5.0
REPLY_GRACE_S = 0.5
# Everything acknowledged is already fsynced: if stopping ever hangs (a gRPC or
# executor thread that will not finish), exiting is safe and beats a SIGKILL.
SHUTDOWN_LIMIT_S = 10.0  # for answers already decided to reach their callers
HEALTH_POLL_S = 0.05


class UsageError(Exception):
    """Flags that cannot start a replica; the message says which and why."""


def parse_peers(text: str) -> dict[int, str]:
    """`1=host:port,2=host:port` -> {1: "host:port", 2: "host:port"}."""
    peers: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, addr = item.partition("=")
        if not sep or not node.strip().isdigit() or ":" not in addr:
            raise UsageError(f"--peers: {item!r} is not ID=HOST:PORT")
        node_id = int(node)
        if node_id <= 0 or node_id in peers:
            raise UsageError(f"--peers: id {node_id} is zero or repeated")
        peers[node_id] = addr.strip()
    if not peers:
        raise UsageError("--peers is empty")
    return peers


@dataclass(frozen=True)
class MetaSettings:
    node_id: int
    listen: str
    data_dir: Path
    secret: ClusterSecret | None
    bootstrap_peers: dict[int, str] | None
    session_timeout_ms: int
    snapshot_every: int = 10_000
    wal_segment_bytes: int = 64 * 1024 * 1024
    snapshot_send_rate: int = 0  # bytes/s of a snapshot transfer; 0: no cap
    data_out_after_s: float = DutyTimes.out_after_s  # a down data server goes out after this


def settings_from_args(args: argparse.Namespace) -> MetaSettings:
    try:
        require(args, "id", "listen", "data_dir")
    except ConfigError as err:
        raise UsageError(str(err)) from err
    if args.id <= 0:
        raise UsageError("--id must be a positive integer")
    try:
        secret = secret_from_args(args)
    except SecretError as err:
        raise UsageError(str(err)) from err
    peers = parse_peers(args.peers) if args.peers else None
    if peers is not None and peers.get(args.id) not in (None, args.listen):
        raise UsageError(
            f"--peers names {peers[args.id]} for id {args.id}, but --listen is {args.listen}"
        )
    if peers is not None and args.id not in peers:
        raise UsageError(f"--peers does not include this replica's id {args.id}")
    if args.snapshot_every <= 0 or args.wal_segment_bytes < 4096:
        raise UsageError("--snapshot-every must be > 0 and --wal-segment-bytes >= 4096")
    send_rate = getattr(args, "snapshot_send_rate", 0) or 0
    if send_rate < 0:
        raise UsageError("--snapshot-send-rate must be >= 0")
    out_after_s = getattr(args, "data_out_after_s", None) or DutyTimes.out_after_s
    if out_after_s <= DutyTimes.down_after_s:
        raise UsageError(f"--data-out-after-s must exceed {DutyTimes.down_after_s:g} s")
    return MetaSettings(
        args.id,
        args.listen,
        Path(args.data_dir),
        secret,
        peers,
        args.session_timeout_ms,
        args.snapshot_every,
        args.wal_segment_bytes,
        send_rate,
        out_after_s,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `dfs meta`; returns the exit status."""
    setup_logging(args.log_level, f"meta{args.id or ''}")
    try:
        settings = settings_from_args(args)
        cluster_id = settings.secret.cluster_id if settings.secret else INSECURE_CLUSTER_ID
        claim(settings.data_dir, Identity("meta", settings.node_id, cluster_id))
        given = Config.of(settings.bootstrap_peers) if settings.bootstrap_peers else None
        if args.join and given is None and not (settings.data_dir / BOOTSTRAP_FILE).exists():
            given = ask_to_join(args.join, settings, cluster_id)
        bootstrap = load_bootstrap(settings.data_dir, given)
        if args.metrics:
            start_metrics_endpoint(args.metrics)
    except (UsageError, DataDirError, BootstrapError, MetricsBindError) as err:
        log.error("%s", err)
        return 2
    try:
        asyncio.run(serve(settings, bootstrap, cluster_id))
    except BindError as err:
        log.error("%s", err)
        return 1
    return 0


JOIN_DEADLINE_S = 60.0


def ask_to_join(addr: str, settings: MetaSettings, cluster_id: str) -> Config:
    """A new replica with an empty data dir asks the group (through any member) to
    take it in; the leader adds it as a learner and answers with the configuration."""
    deadline = time.monotonic() + JOIN_DEADLINE_S
    target = addr
    last_error = "no answer"
    while time.monotonic() < deadline:
        with sync_channel(target, settings.secret) as channel:
            try:
                reply = paxos_pb2_grpc.PaxosStub(channel).Join(
                    paxos_pb2.JoinRequest(
                        id=settings.node_id, addr=settings.listen, cluster_id=cluster_id
                    ),
                    timeout=35,
                )
            except grpc.RpcError as err:
                last_error = f"{target}: {err.code().name}"
                reply = None
        if reply is not None and reply.accepted:
            log.info("joined through %s as a learner", target)
            return config_from_pb(reply.config)
        if reply is not None:
            last_error = reply.error
            target = reply.leader_addr or addr
        time.sleep(0.5)
    raise UsageError(f"could not join through {addr}: {last_error}")


def arm_exit_watchdog(limit_s: float) -> None:
    def expire() -> None:
        log.warning(
            "stop took over %.0f s; exiting now (all acknowledged state is on disk)", limit_s
        )
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(limit_s, expire)
    timer.daemon = True
    timer.start()


async def serve(settings: MetaSettings, bootstrap: Config, cluster_id: str) -> None:
    from dfs.admin.service import MetaAdminService

    planted = planted_from_env()  # test-only: the fault suite plants bugs; none in production
    state = MetaStateMachine(session_timeout_ns=settings.session_timeout_ms * 1_000_000,
                             planted=planted)
    node = PaxosNode(
        settings.node_id,
        settings.data_dir,
        state,
        settings.secret,
        bootstrap,
        NodeOptions(
            snapshot_every=settings.snapshot_every,
            wal_segment_bytes=settings.wal_segment_bytes,
            snapshot_send_bytes_per_s=settings.snapshot_send_rate,
        ),
    )
    node.cluster_id = cluster_id
    proposer = Proposer(node, state)
    duties = LeaderDuties(node, state, DutyTimes(out_after_s=settings.data_out_after_s))
    services = [
        lambda s: paxos_pb2_grpc.add_PaxosServicer_to_server(node.service, s),
        lambda s: meta_pb2_grpc.add_KvServicer_to_server(KvService(node, state, planted), s),
        lambda s: meta_pb2_grpc.add_MetaServicer_to_server(MetaService(proposer, state, duties), s),
        lambda s: meta_pb2_grpc.add_ClusterServicer_to_server(
            ClusterService(proposer, duties, cluster_id), s
        ),
        lambda s: admin_pb2_grpc.add_AdminServicer_to_server(
            MetaAdminService(node, proposer, cluster_id, settings.listen, duties), s
        ),
    ]
    server = GrpcServer(settings.listen, settings.secret)
    for register in services:
        server.add(register)
    await node.start()
    expose(PaxosCollector(node))  # registering reads it once: after start
    await server.start()
    duties_task = asyncio.get_running_loop().create_task(duties.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = False
    while not stop.is_set():
        knows_leader = node.core.leader_id is not None
        if knows_leader != serving:
            serving = knows_leader
            await server.set_serving(serving)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_POLL_S)
    log.info("stopping: finishing in-flight requests")
    arm_exit_watchdog(SHUTDOWN_LIMIT_S)
    # In-flight writes complete while the node still runs; then the server
    # stops (its long-lived peer streams would otherwise hold it for the whole
    # grace period), then the node.
    duties_task.cancel()
    await node.drain(STOP_GRACE_S)
    await server.stop(REPLY_GRACE_S)
    await node.stop(0)
    log.info("stopped")
