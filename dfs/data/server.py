"""The `dfs data` process: one data server serving the Data service on one address,
registered with the metadata leader, heartbeating, until SIGTERM.

Owns process lifecycle only: flags, secret, data-dir identity, wiring the store to
the service and the membership loops, health, and a stop that lets in-flight
uploads finish. Chunk handling lives in store.py and service.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from dfs.auth import ClusterSecret, SecretError, secret_from_args
from dfs.client.retry import LeaderChannels
from dfs.config import ConfigError, require
from dfs.data.admin import DataAdminService
from dfs.data.antientropy import PASS_INTERVAL_S, AntiEntropy
from dfs.data.chain import PeerChannels
from dfs.data.gc import GarbageCollector
from dfs.data.load import Load
from dfs.data.membership import Membership, RegistrationRefused, ServerIdentity
from dfs.data.pacing import MB, BytePacer
from dfs.data.repair import Upkeep
from dfs.data.ringview import RingView
from dfs.data.scrub import DEFAULT_RATE_MBPS, REST_BETWEEN_PASSES_S, Scrubber
from dfs.data.service import DataService
from dfs.data.store import ChunkStore
from dfs.data.sweep import DEFAULT_GRACE_S, SWEEP_INTERVAL_S, OrphanSweep
from dfs.datadir import INSECURE_CLUSTER_ID, DataDirError, Identity, claim
from dfs.logs import setup_logging
from dfs.metrics.collectors import DataServerCollector
from dfs.metrics.endpoint import MetricsBindError, expose, start_metrics_endpoint
from dfs.rpc import admin_pb2_grpc, data_pb2_grpc
from dfs.serving import BindError, GrpcServer

log = logging.getLogger("dfs.data")

# Uploads are at most 64 MiB; at disk speed they finish well inside this.
WRITE_DRAIN_S = 10.0
# Repair and rebalance pushes: 20 MB/s moves a lost 1 TB server's share in about
# half a day per pushing server while leaving most of a disk to clients.
DEFAULT_REPAIR_RATE_MBPS = 20.0


class UsageError(Exception):
    """Flags that cannot start a data server; the message says which and why."""


@dataclass(frozen=True)
class DataSettings:
    server_id: int
    listen: str
    meta_addrs: list[str]
    data_dir: Path
    secret: ClusterSecret | None
    weight: int
    domain: str
    capacity: int
    lifecycle: Lifecycle


@dataclass(frozen=True)
class Lifecycle:
    """Rates and periods of the background work (defaults suit production; tests
    shorten them)."""

    scrub_rate_mbps: float = DEFAULT_RATE_MBPS
    scrub_rest_s: float = REST_BETWEEN_PASSES_S
    repair_rate_mbps: float = DEFAULT_REPAIR_RATE_MBPS
    pass_interval_s: float = PASS_INTERVAL_S
    sweep_interval_s: float = SWEEP_INTERVAL_S
    sweep_grace_s: float = DEFAULT_GRACE_S


def lifecycle_from_args(args: argparse.Namespace) -> Lifecycle:
    defaults = Lifecycle()
    values = {name: getattr(args, name, None) for name in vars(defaults)}
    lifecycle = Lifecycle(**{k: v if v is not None else getattr(defaults, k)
                             for k, v in values.items()})
    if min(vars(lifecycle).values()) < 0:
        raise UsageError("scrub, repair and sweep rates and periods must be >= 0")
    if lifecycle.pass_interval_s <= 0 or lifecycle.sweep_interval_s <= 0:
        raise UsageError("--pass-interval-s and --sweep-interval-s must be > 0")
    return lifecycle


def settings_from_args(args: argparse.Namespace) -> DataSettings:
    try:
        require(args, "id", "listen", "meta", "data_dir")
    except ConfigError as err:
        raise UsageError(str(err)) from err
    if args.id <= 0:
        raise UsageError("--id must be a positive integer")
    if ":" not in args.listen:
        raise UsageError(f"--listen {args.listen!r} is not HOST:PORT")
    meta_addrs = [a.strip() for a in str(args.meta).split(",") if a.strip()]
    if not meta_addrs or any(":" not in a for a in meta_addrs):
        raise UsageError(f"--meta {args.meta!r} is not HOST:PORT[,HOST:PORT...]")
    if args.weight <= 0:
        raise UsageError("--weight must be a positive integer")
    if args.capacity < 0:
        raise UsageError("--capacity must be >= 0 bytes")
    try:
        secret = secret_from_args(args)
    except SecretError as err:
        raise UsageError(str(err)) from err
    return DataSettings(
        args.id, args.listen, meta_addrs, Path(args.data_dir), secret, args.weight,
        args.domain or "", args.capacity, lifecycle_from_args(args),
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `dfs data`; returns the exit status."""
    setup_logging(args.log_level, f"data{args.id or ''}")
    try:
        settings = settings_from_args(args)
        cluster_id = settings.secret.cluster_id if settings.secret else INSECURE_CLUSTER_ID
        claim(settings.data_dir, Identity("data", settings.server_id, cluster_id))
        if args.metrics:
            start_metrics_endpoint(args.metrics)
    except (UsageError, DataDirError, MetricsBindError) as err:
        log.error("%s", err)
        return 2
    try:
        asyncio.run(serve(settings, cluster_id))
    except (BindError, RegistrationRefused) as err:
        log.error("%s", err)
        return 1
    return 0


async def serve(settings: DataSettings, cluster_id: str) -> None:
    store = await asyncio.to_thread(ChunkStore, settings.data_dir / "store")
    ring = RingView()
    load = Load(settings.capacity)
    peers = PeerChannels(settings.secret)
    service = DataService(store, ring, settings.listen, load, peers)
    server = GrpcServer(settings.listen, settings.secret)
    server.add(lambda s: data_pb2_grpc.add_DataServicer_to_server(service, s))
    lifecycle = settings.lifecycle
    channels = LeaderChannels(settings.meta_addrs, settings.secret)
    identity = ServerIdentity(
        settings.server_id, settings.listen, settings.weight, settings.domain, cluster_id,
        settings.capacity,
    )
    collector = GarbageCollector(channels, settings.server_id, settings.listen, store, ring, peers)
    upkeep = Upkeep(store, ring, settings.listen, peers)
    anti_entropy = AntiEntropy(channels, store, ring, settings.listen, peers,
                               BytePacer(lifecycle.repair_rate_mbps * MB),
                               lifecycle.pass_interval_s)
    scrubber = Scrubber(store, lifecycle.scrub_rate_mbps, lifecycle.scrub_rest_s)
    sweep = OrphanSweep(channels, store, lifecycle.sweep_grace_s, lifecycle.sweep_interval_s)
    membership = Membership(
        channels, identity, store, load, ring,
        health_figures=lambda: (anti_entropy.last, upkeep.unrepaired),
        on_new_ring=anti_entropy.wake.set,
    )
    admin = DataAdminService(
        settings.server_id, cluster_id, settings.listen, store, ring, settings.capacity,
        scrubber, anti_entropy, upkeep,
    )
    server.add(lambda s: admin_pb2_grpc.add_AdminServicer_to_server(admin, s))
    expose(DataServerCollector(store, settings.capacity, scrubber, anti_entropy, upkeep))
    await server.set_serving(False)  # SERVING only once registered in the ring
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if await membership.register(stop):
            await server.set_serving(True)
            loops = [
                asyncio.ensure_future(membership.heartbeat_loop(stop)),
                asyncio.ensure_future(membership.ring_refresh_loop(stop)),
                asyncio.ensure_future(collector.loop(stop)),
                asyncio.ensure_future(upkeep.loop(stop)),
                asyncio.ensure_future(anti_entropy.loop(stop)),
                asyncio.ensure_future(scrubber.loop(stop)),
                asyncio.ensure_future(sweep.loop(stop)),
            ]
            await stop.wait()
            # Heartbeats, ring fetches, GC, scrub and repair passes are safe to abandon
            # mid-call (the store's writes are whole or absent); waiting for them would
            # hold shutdown for a metadata call's deadline.
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
    finally:
        log.info("stopping: finishing in-flight uploads")
        if load.writes:
            log.info("%d uploads in flight", load.writes)
        # stop() refuses new calls at once and lets running ones finish within the grace.
        await server.stop(WRITE_DRAIN_S)
        await peers.close()
        await channels.close()
        log.info("stopped")
