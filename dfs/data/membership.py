"""A data server's side of cluster membership: registering with the metadata leader,
heartbeating every second, and keeping its view of the ring current.

Owns those three conversations with the Cluster and Meta services. It never changes
the ring itself (the leader does, through the log) and never touches chunk files
beyond reading the store's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from dfs.client.retry import LeaderChannels, LeaderUnavailable
from dfs.data.antientropy import PassFigures
from dfs.data.load import Load
from dfs.data.ringview import RingView
from dfs.data.store import ChunkStore
from dfs.placement.members import RingConfigError
from dfs.placement.wire import config_from_proto
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc

log = logging.getLogger(__name__)

# The leader marks a server down after 5 s of silence; a beat every second leaves
# room for four lost ones.
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_DEADLINE_S = 2.0
REGISTER_RETRY_S = 0.5


class RegistrationRefused(Exception):
    """The metadata service refused this server (wrong cluster, bad id or address)."""


@dataclass(frozen=True)
class ServerIdentity:
    """What this data server tells the metadata service about itself."""

    server_id: int
    addr: str
    weight: int
    domain: str
    cluster_id: str
    capacity_limit: int  # --capacity, 0 = the filesystem's size


class Membership:
    """Registration, heartbeats and ring refreshes for one data server."""

    def __init__(
        self,
        channels: LeaderChannels,
        identity: ServerIdentity,
        store: ChunkStore,
        load: Load,
        ring: RingView,
        health_figures: Callable[[], tuple[PassFigures, int]] = lambda: (PassFigures(), 0),
        on_new_ring: Callable[[], None] = lambda: None,
    ) -> None:
        self.channels = channels
        self.identity = identity
        self.store = store
        self.load = load
        self.ring = ring
        # The last anti-entropy pass's figures, and the copies repair found no good twin of
        self.health_figures = health_figures
        self.on_new_ring = on_new_ring  # a newer ring was adopted: time for a pass

    async def register(self, stop: asyncio.Event) -> bool:
        """RegisterData until the leader answers; False when stopped first."""
        request = meta_pb2.RegisterDataRequest(
            id=self.identity.server_id,
            addr=self.identity.addr,
            weight=self.identity.weight,
            domain=self.identity.domain,
            cluster_id=self.identity.cluster_id,
        )

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).RegisterData(request, timeout=timeout)

        while not stop.is_set():
            try:
                ring: common_pb2.Ring = await self.channels.call(attempt, deadline_s=5.0)
            except LeaderUnavailable as err:
                log.warning("registering: %s; retrying", err)
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL):
                    log.warning("registering: %s %s; retrying", err.code().name, err.details())
                else:
                    raise RegistrationRefused(f"{err.code().name}: {err.details()}") from err
            else:
                self._adopt(ring)
                log.info("registered as data server %d, ring epoch %d",
                         self.identity.server_id, self.ring.epoch)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REGISTER_RETRY_S)
        return False

    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        """One heartbeat a second until stopped; a failed one is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.heartbeat()
            except (LeaderUnavailable, grpc.aio.AioRpcError) as err:
                log.warning("heartbeat failed: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL_S)

    async def heartbeat(self) -> None:
        capacity = self.identity.capacity_limit
        if not capacity:
            capacity, _ = await asyncio.to_thread(self.store.filesystem_bytes)
        figures, lost = self.health_figures()
        request = meta_pb2.DataHeartbeatRequest(
            id=self.identity.server_id,
            capacity=capacity,
            used=self.store.used_bytes,
            chunks=self.store.chunk_count,
            load=self.load.requests,
            under_replicated=figures.under_replicated,
            lost=lost,
            misplaced=figures.misplaced,
            pass_epoch=figures.epoch,
            live_held=figures.live_held,
        )

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.ClusterStub(channel).DataHeartbeat(
                request, timeout=timeout
            )

        reply: meta_pb2.DataHeartbeatReply = await self.channels.call(
            attempt, deadline_s=HEARTBEAT_DEADLINE_S
        )
        self.ring.hear(reply.ring_epoch)

    async def ring_refresh_loop(self, stop: asyncio.Event) -> None:
        """Fetch the ring whenever a newer epoch has been heard of."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ring.behind.wait(), HEARTBEAT_INTERVAL_S)
            if not self.ring.behind.is_set() or stop.is_set():
                continue
            try:
                await self.fetch_ring()
            except (LeaderUnavailable, grpc.aio.AioRpcError) as err:
                log.warning("fetching the ring failed: %s", err)
            if self.ring.behind.is_set():  # failed, or the leader is behind what we heard
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REGISTER_RETRY_S)

    async def fetch_ring(self) -> None:
        request = meta_pb2.GetRingRequest(known_epoch=0)

        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await meta_pb2_grpc.MetaStub(channel).GetRing(request, timeout=timeout)

        ring: common_pb2.Ring = await self.channels.call(attempt, deadline_s=5.0)
        self._adopt(ring)

    def _adopt(self, ring: common_pb2.Ring) -> None:
        try:
            config = config_from_proto(ring)
        except (RingConfigError, ValueError) as err:
            log.error("ignoring an invalid ring from the metadata service: %s", err)
            return
        before = self.ring.fetched_epoch
        self.ring.adopt(config)
        if config.epoch != before:
            log.info("ring epoch %d (%d members)", config.epoch, len(config.members))
            self.on_new_ring()
