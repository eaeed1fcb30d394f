"""Peer transport over real gRPC: streams deliver, reconnect after a restart,
and phase-1 calls return None when the peer is gone."""

from __future__ import annotations

import asyncio

from dfs.paxos.transport import PaxosService, PeerTransport
from dfs.rpc import paxos_pb2, paxos_pb2_grpc
from dfs.serving import GrpcServer
from tests.support.ports import free_addrs


async def start_replica(
    addr: str, inbox: list[paxos_pb2.PeerMessage], arrived: asyncio.Event
) -> GrpcServer:
    def on_message(message: paxos_pb2.PeerMessage) -> None:
        inbox.append(message)
        arrived.set()

    async def on_prepare(request: paxos_pb2.PrepareRequest) -> paxos_pb2.PrepareReply:
        return paxos_pb2.PrepareReply(promised=True, promised_ballot=request.ballot, sender=2)

    server = GrpcServer(addr, None)
    service = PaxosService(on_message, on_prepare)
    server.add(lambda s: paxos_pb2_grpc.add_PaxosServicer_to_server(service, s))
    await server.start()
    return server


def heartbeat(seq: int) -> paxos_pb2.PeerMessage:
    return paxos_pb2.PeerMessage(
        to=2, heartbeat=paxos_pb2.Heartbeat(ballot=paxos_pb2.Ballot(round=1, node=1), seq=seq),
        sender=1,
    )


async def wait_for(inbox: list[paxos_pb2.PeerMessage], arrived: asyncio.Event, seq: int) -> None:
    while not any(m.heartbeat.seq == seq for m in inbox):
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), timeout=10)


def test_stream_delivers_and_reconnects_after_restart() -> None:
    async def scenario() -> None:
        (addr,) = free_addrs(1)
        inbox: list[paxos_pb2.PeerMessage] = []
        arrived = asyncio.Event()
        server = await start_replica(addr, inbox, arrived)
        transport = PeerTransport(self_id=1, secret=None)
        transport.set_peers({1: "unused", 2: addr})
        for seq in range(1, 101):
            transport.send(heartbeat(seq))
        await wait_for(inbox, arrived, 100)
        assert [m.heartbeat.seq for m in inbox] == list(range(1, 101))  # in order on one stream

        reply = await transport.prepare(2, paxos_pb2.PrepareRequest(
            ballot=paxos_pb2.Ballot(round=5, node=1)), timeout_s=5)
        assert reply is not None and reply.promised and reply.promised_ballot.round == 5

        await server.stop(0)
        assert await transport.prepare(2, paxos_pb2.PrepareRequest(), timeout_s=0.5) is None
        server = await start_replica(addr, inbox, arrived)
        # Keep sending until the link has reconnected; early sends may be lost.
        for seq in range(1000, 1200):
            transport.send(heartbeat(seq))
            await asyncio.sleep(0.02)
            if any(m.heartbeat.seq >= 1000 for m in inbox):
                break
        assert any(m.heartbeat.seq >= 1000 for m in inbox), "no delivery after the restart"
        await transport.close()
        await server.stop(0)

    asyncio.run(scenario())


def test_a_peer_that_is_down_leaves_no_task_behind_per_attempt() -> None:
    """gRPC leaves the request puller of a failed stream call waiting on the queue;
    each would take (and lose) a message once the peer is back."""

    async def scenario() -> None:
        (addr,) = free_addrs(1)  # nobody listens there: every attempt is refused
        transport = PeerTransport(self_id=1, secret=None)
        transport.set_peers({1: "unused", 2: addr})
        await asyncio.sleep(0.5)
        before = len(asyncio.all_tasks())
        await asyncio.sleep(1.5)  # about 15 more attempts at the reconnect ceiling
        assert len(asyncio.all_tasks()) <= before + 1
        await transport.close()

    asyncio.run(scenario())
