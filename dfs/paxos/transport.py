"""gRPC transport between metadata replicas.

Owns the connections: one long-lived outbound `Paxos.Stream` per peer (each
replica sends on its own stream, so the two directions of a pair never wait on
each other), reconnected with backoff, and unary `Prepare` calls for phase 1.
Messages are protobuf `PeerMessage`s; converting them to and from the core's
dataclasses is the driver's job. Delivery is best effort: Paxos tolerates loss,
duplication and reordering, so a full queue or a broken stream drops messages
and the core's retransmission covers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from dfs.auth import ClusterSecret, aio_channel
from dfs.rpc import paxos_pb2, paxos_pb2_grpc

log = logging.getLogger(__name__)

SEND_QUEUE_LIMIT = 20_000  # messages buffered per peer before the oldest are dropped
RECONNECT_INITIAL_S = 0.05
# Below the shortest election timeout (0.3 s): a replica restarted after a crash must
# hear the leader before its own election timer runs out, or it campaigns and
# deposes a healthy leader (with 1 s here every restart after a few seconds down
# cost one needless election). A refused connection attempt costs next to nothing.
RECONNECT_MAX_S = 0.1
STREAM_UP_S = 1.0  # a stream that lasted this long was connected, not refused

InboundHandler = Callable[[paxos_pb2.PeerMessage], None]
JoinHandler = Callable[[paxos_pb2.JoinRequest], Awaitable[paxos_pb2.JoinReply]]
SnapshotHandler = Callable[
    [AsyncIterator[paxos_pb2.SnapshotChunk]], Awaitable[paxos_pb2.InstallSnapshotReply]
]
PrepareHandler = Callable[[paxos_pb2.PrepareRequest], Awaitable[paxos_pb2.PrepareReply]]
OfferHandler = Callable[[paxos_pb2.SnapshotOffer], Awaitable[paxos_pb2.SnapshotHeld]]


class _Feed:
    """The requests of one Stream call: from the peer's queue, until the call is over.

    gRPC pulls them in a task of its own, which it cancels only when the call is
    cancelled: after a call that failed it would wait on the queue, take the next
    message and lose it (one lost message per failed attempt while a peer is down,
    heartbeats among them). `close` ends it.
    """

    def __init__(self, queue: asyncio.Queue[paxos_pb2.PeerMessage]) -> None:
        self.queue = queue
        self.over = False
        self._puller: asyncio.Task[Any] | None = None

    async def messages(self) -> AsyncIterator[paxos_pb2.PeerMessage]:
        self._puller = asyncio.current_task()
        while not self.over:
            yield await self.queue.get()

    def close(self) -> None:
        self.over = True
        if self._puller is not None:
            self._puller.cancel()


class PeerLink:
    """The outbound stream to one peer, with its send queue and reconnect loop."""

    def __init__(self, peer_id: int, addr: str, secret: ClusterSecret | None) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self.secret = secret
        self.channel = aio_channel(addr, secret)
        self.queue: asyncio.Queue[paxos_pb2.PeerMessage] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self.connected = False
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, message: paxos_pb2.PeerMessage) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def _run(self) -> None:
        backoff = RECONNECT_INITIAL_S
        stub = paxos_pb2_grpc.PaxosStub(self.channel)
        while True:
            feed = _Feed(self.queue)
            call = stub.Stream(feed.messages())
            opened = time.monotonic()
            try:
                # The stream stays open as long as both sides live; the peer
                # sends nothing back on it.
                self.connected = True
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as err:
                if time.monotonic() - opened >= STREAM_UP_S:
                    backoff = RECONNECT_INITIAL_S  # it was up: a new outage
                # The first failure of an outage is news; the retries while the peer
                # stays down are not.
                log.log(
                    logging.INFO if backoff == RECONNECT_INITIAL_S else logging.DEBUG,
                    "stream to replica %d (%s) broke: %s",
                    self.peer_id,
                    self.addr,
                    err.code().name,
                )
            finally:
                self.connected = False
                call.cancel()
                feed.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def prepare(
        self, request: paxos_pb2.PrepareRequest, timeout_s: float
    ) -> paxos_pb2.PrepareReply | None:
        try:
            reply: paxos_pb2.PrepareReply = await paxos_pb2_grpc.PaxosStub(self.channel).Prepare(
                request, timeout=timeout_s
            )
            return reply
        except grpc.aio.AioRpcError as err:
            log.debug("prepare to replica %d failed: %s", self.peer_id, err.code().name)
            return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


class PeerTransport:
    """Links to every peer of this replica."""

    def __init__(self, self_id: int, secret: ClusterSecret | None) -> None:
        self.self_id = self_id
        self.secret = secret
        self.links: dict[int, PeerLink] = {}

    def set_peers(self, peers: dict[int, str]) -> None:
        """Open links to new peers, close links to removed ones (membership changes)."""
        for peer_id, addr in peers.items():
            if peer_id == self.self_id:
                continue
            link = self.links.get(peer_id)
            if link is not None and link.addr == addr:
                continue
            if link is not None:
                asyncio.get_running_loop().create_task(link.close())
            link = PeerLink(peer_id, addr, self.secret)
            link.start()
            self.links[peer_id] = link
        for peer_id in [p for p in self.links if p not in peers]:
            asyncio.get_running_loop().create_task(self.links.pop(peer_id).close())

    def send(self, message: paxos_pb2.PeerMessage) -> None:
        link = self.links.get(message.to)
        if link is not None:
            link.send(message)

    async def prepare(
        self, peer_id: int, request: paxos_pb2.PrepareRequest, timeout_s: float
    ) -> paxos_pb2.PrepareReply | None:
        link = self.links.get(peer_id)
        return None if link is None else await link.prepare(request, timeout_s)

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))
        self.links.clear()


class PaxosService(paxos_pb2_grpc.PaxosServicer):
    """Inbound side: hands every peer message to the driver."""

    def __init__(
        self,
        on_message: InboundHandler,
        on_prepare: PrepareHandler,
        on_snapshot: SnapshotHandler | None = None,
        on_join: JoinHandler | None = None,
        on_offer: OfferHandler | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_prepare = on_prepare
        self._on_snapshot = on_snapshot
        self._on_join = on_join
        self._on_offer = on_offer

    async def Stream(
        self, request_iterator: AsyncIterator[paxos_pb2.PeerMessage], context: Any
    ) -> AsyncIterator[paxos_pb2.PeerMessage]:
        async for message in request_iterator:
            self._on_message(message)
        return
        yield  # an async generator that never answers on this stream

    async def Prepare(
        self, request: paxos_pb2.PrepareRequest, context: Any
    ) -> paxos_pb2.PrepareReply:
        return await self._on_prepare(request)

    async def OfferSnapshot(
        self, request: paxos_pb2.SnapshotOffer, context: Any
    ) -> paxos_pb2.SnapshotHeld:
        if self._on_offer is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this replica takes no snapshots")
            raise AssertionError("unreachable")
        return await self._on_offer(request)

    async def InstallSnapshot(
        self, request_iterator: AsyncIterator[paxos_pb2.SnapshotChunk], context: Any
    ) -> paxos_pb2.InstallSnapshotReply:
        if self._on_snapshot is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this replica takes no snapshots")
            raise AssertionError("unreachable")
        return await self._on_snapshot(request_iterator)

    async def Join(self, request: paxos_pb2.JoinRequest, context: Any) -> paxos_pb2.JoinReply:
        if self._on_join is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this replica takes no members")
            raise AssertionError("unreachable")
        return await self._on_join(request)
