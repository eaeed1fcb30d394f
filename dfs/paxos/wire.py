"""Mapping between the core's message dataclasses and the protobuf wire types.

Owns nothing but the field-by-field translation; the driver and transport use
it so the core never sees protobuf.
"""

from __future__ import annotations

from dfs.paxos.ballot import Ballot
from dfs.paxos.config import Config
from dfs.paxos.messages import (
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    LogEntry,
    Message,
    Prepare,
    Promise,
    TimeoutNow,
)
from dfs.rpc import paxos_pb2


def ballot_to_pb(ballot: Ballot) -> paxos_pb2.Ballot:
    return paxos_pb2.Ballot(round=ballot.round, node=ballot.node)


def ballot_from_pb(pb: paxos_pb2.Ballot) -> Ballot:
    return Ballot(pb.round, pb.node)


def config_to_pb(config: Config) -> paxos_pb2.Config:
    return paxos_pb2.Config(
        voters=dict(config.voters),
        learners=dict(config.learners),
        old_voters=dict(config.old_voters),
    )


def config_from_pb(pb: paxos_pb2.Config) -> Config:
    return Config.of(dict(pb.voters), dict(pb.learners), dict(pb.old_voters))


def entry_to_pb(entry: LogEntry) -> paxos_pb2.LogEntry:
    pb = paxos_pb2.LogEntry(
        slot=entry.slot, ballot=ballot_to_pb(entry.ballot), commands=list(entry.commands)
    )
    if entry.config is not None:
        pb.config = config_to_pb(entry.config).SerializeToString()
    return pb


def entry_from_pb(pb: paxos_pb2.LogEntry) -> LogEntry:
    config = config_from_pb(paxos_pb2.Config.FromString(pb.config)) if pb.config else None
    return LogEntry(pb.slot, ballot_from_pb(pb.ballot), tuple(pb.commands), config)


def prepare_to_pb(msg: Prepare) -> paxos_pb2.PrepareRequest:
    return paxos_pb2.PrepareRequest(
        ballot=ballot_to_pb(msg.ballot), from_slot=msg.from_slot, sender=msg.sender
    )


def prepare_from_pb(pb: paxos_pb2.PrepareRequest) -> Prepare:
    return Prepare(pb.sender, ballot_from_pb(pb.ballot), pb.from_slot)


def promise_to_pb(msg: Promise) -> paxos_pb2.PrepareReply:
    return paxos_pb2.PrepareReply(
        promised=msg.promised,
        promised_ballot=ballot_to_pb(msg.promised_ballot),
        accepted=[entry_to_pb(e) for e in msg.accepted],
        chosen_upto=msg.chosen_upto,
        log_start=msg.log_start,
        sender=msg.sender,
    )


def promise_from_pb(pb: paxos_pb2.PrepareReply) -> Promise:
    return Promise(
        pb.sender,
        pb.promised,
        ballot_from_pb(pb.promised_ballot),
        tuple(entry_from_pb(e) for e in pb.accepted),
        pb.chosen_upto,
        pb.log_start,
    )


def message_to_pb(to: int, msg: Message) -> paxos_pb2.PeerMessage:
    """The stream envelope for any message (Prepare/Promise too, though the
    driver normally sends those as unary calls)."""
    envelope = paxos_pb2.PeerMessage(to=to, sender=msg.sender)
    if isinstance(msg, Accept):
        envelope.accept.CopyFrom(
            paxos_pb2.AcceptRequest(
                ballot=ballot_to_pb(msg.ballot),
                entries=[entry_to_pb(e) for e in msg.entries],
                chosen_upto=msg.chosen_upto,
            )
        )
    elif isinstance(msg, Accepted):
        envelope.accepted.CopyFrom(
            paxos_pb2.AcceptReply(
                ballot=ballot_to_pb(msg.ballot),
                accepted_upto=msg.accepted_upto,
                ok=msg.ok,
                promised_ballot=ballot_to_pb(msg.promised_ballot),
                next_needed=msg.next_needed,
            )
        )
    elif isinstance(msg, Heartbeat):
        envelope.heartbeat.CopyFrom(
            paxos_pb2.Heartbeat(
                ballot=ballot_to_pb(msg.ballot), chosen_upto=msg.chosen_upto, seq=msg.seq
            )
        )
    elif isinstance(msg, HeartbeatAck):
        envelope.heartbeat_ack.CopyFrom(
            paxos_pb2.HeartbeatAck(
                ballot=ballot_to_pb(msg.ballot),
                seq=msg.seq,
                ok=msg.ok,
                accepted_upto=msg.accepted_upto,
            )
        )
    elif isinstance(msg, TimeoutNow):
        envelope.timeout_now.CopyFrom(
            paxos_pb2.TimeoutNow(ballot=ballot_to_pb(msg.ballot), target=msg.target)
        )
    elif isinstance(msg, Prepare):
        envelope.prepare.CopyFrom(prepare_to_pb(msg))
    else:
        envelope.promise.CopyFrom(promise_to_pb(msg))
    return envelope


def message_from_pb(pb: paxos_pb2.PeerMessage) -> Message | None:
    """The core message in an envelope; None for an empty or unknown body."""
    sender = pb.sender
    body = pb.WhichOneof("body")
    if body == "accept":
        a = pb.accept
        return Accept(
            sender,
            ballot_from_pb(a.ballot),
            tuple(entry_from_pb(e) for e in a.entries),
            a.chosen_upto,
        )
    if body == "accepted":
        r = pb.accepted
        return Accepted(
            sender,
            ballot_from_pb(r.ballot),
            r.accepted_upto,
            r.ok,
            ballot_from_pb(r.promised_ballot),
            r.next_needed,
        )
    if body == "heartbeat":
        h = pb.heartbeat
        return Heartbeat(sender, ballot_from_pb(h.ballot), h.chosen_upto, h.seq)
    if body == "heartbeat_ack":
        k = pb.heartbeat_ack
        return HeartbeatAck(sender, ballot_from_pb(k.ballot), k.seq, k.ok, k.accepted_upto)
    if body == "timeout_now":
        t = pb.timeout_now
        return TimeoutNow(sender, ballot_from_pb(t.ballot), t.target)
    if body == "prepare":
        return prepare_from_pb(pb.prepare)
    if body == "promise":
        return promise_from_pb(pb.promise)
    return None
