"""Everything a metadata replica replicates, as one state machine for the log.

A log command is either a client's session command (exactly-once, routed by a
one-byte tag to the diagnostic KV or to the namespace) or a system command the
leader proposes on its own (ring changes, orphan release, GC acks, open-inode
reports), applied at the session table's state time. Pure and deterministic,
like the machines it composes.
"""

from __future__ import annotations

import errno
import struct

from dfs.meta import codec as ns_codec
from dfs.meta.ops import Command as NsCommand
from dfs.meta.statemachine import NamespaceMachine
from dfs.paxos import kv, sessions
from dfs.paxos.machine import ApplyContext
from dfs.paxos.planted import PlantedBug

SESSION_COMMAND = b"S"
SYSTEM_COMMAND = b"Y"
KV_PAYLOAD = b"k"
NS_PAYLOAD = b"n"
_SNAPSHOT_VERSION = 1
_LEN = struct.Struct(">Q")
# A KV key costs about half an inode to sort and encode: steps take keys in that
# ratio, so a step of either lasts about as long (a few ms).
KEYS_PER_INODE = 2


def router_snapshot_parts(
    kv_part: bytes | bytearray, namespace_part: bytes
) -> list[bytes | bytearray]:
    """The router's snapshot format, in parts to be joined once: version, KV length,
    KV, namespace."""
    return [bytes([_SNAPSHOT_VERSION]), _LEN.pack(len(kv_part)), kv_part, namespace_part]


class PayloadRouter:
    """The machine behind the session table: sends each payload to KV or namespace."""

    def __init__(self, kv_machine: kv.KvMachine, namespace: NamespaceMachine) -> None:
        self.kv = kv_machine
        self.namespace = namespace

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        tag, payload = command[:1], command[1:]
        if tag == KV_PAYLOAD:
            return self.kv.apply(payload, ctx)
        if tag == NS_PAYLOAD:
            return self.namespace.apply(payload, ctx)
        raise ValueError(f"unknown payload tag {tag!r}")

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        self.kv.session_closed(session, ctx)
        self.namespace.session_closed(session, ctx)

    def snapshot(self) -> bytes:
        return b"".join(router_snapshot_parts(self.kv.snapshot(), self.namespace.snapshot()))

    def restore(self, data: bytes) -> None:
        if not data or data[0] != _SNAPSHOT_VERSION:
            raise ValueError("unknown replicated-state snapshot version")
        (kv_length,) = _LEN.unpack_from(data, 1)
        start = 1 + _LEN.size
        self.kv.restore(data[start : start + kv_length])
        self.namespace.restore(data[start + kv_length :])


class MetaStateMachine:
    """The replicated state of the metadata group: sessions, KV and namespace."""

    def __init__(
        self, session_timeout_ns: int, planted: frozenset[PlantedBug] = frozenset()
    ) -> None:
        self.kv = kv.KvMachine()
        self.namespace = NamespaceMachine()
        self.router = PayloadRouter(self.kv, self.namespace)
        self.sessions = sessions.SessionTable(self.router, session_timeout_ns, planted)
        self._snapshot_head = b""
        self._snapshot_kv = kv.SnapshotEncoder({})

    # ---- the log's side -----------------------------------------------------------

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        tag, body = command[:1], command[1:]
        if tag == SESSION_COMMAND:
            return self.sessions.apply(body, ctx)
        if tag == SYSTEM_COMMAND:
            system_ctx = ApplyContext(ctx.slot, ctx.index, self.sessions.state_time_ns, 0)
            return self.namespace.apply(body, system_ctx)
        # Only our own encoders write the log; refuse identically on every replica.
        return sessions.encode_result(sessions.SessionResult(errno.EINVAL))

    def tick_command(self, time_ns: int, leader_round: int, leader_node: int) -> bytes:
        return session_command(sessions.Tick(time_ns, leader_round, leader_node))

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        """Sessions end inside the session table; nothing wraps this machine."""

    def snapshot(self) -> bytes:
        return self.sessions.snapshot()

    def restore(self, data: bytes) -> None:
        self.sessions.restore(data)

    # ---- snapshots in steps, so commits go on while one is taken ---------------------

    def begin_snapshot(self) -> None:
        """Capture the state as of now. Sessions and KV are copied at once (small);
        the namespace is encoded in steps, copy-on-write, between later commands."""
        self._snapshot_head = self.sessions.snapshot_head()
        self._snapshot_kv = kv.SnapshotEncoder(self.kv.snapshot_copy())
        self.namespace.begin_snapshot()

    def snapshot_step(self, max_inodes: int) -> bool:
        """Encode a little more (KV keys first, then inodes); True when
        finish_snapshot is ready (and cheap)."""
        if not self._snapshot_kv.step(max_inodes * KEYS_PER_INODE):
            return False
        return self.namespace.snapshot_step(max_inodes)

    def finish_snapshot(self) -> bytes:
        """The snapshot begun by begin_snapshot; reads no live state once the steps
        are done, so it may run on a worker thread."""
        router = router_snapshot_parts(
            self._snapshot_kv.finish(), self.namespace.finish_snapshot()
        )
        return sessions.SessionTable.join_snapshot(self._snapshot_head, *router)


def session_command(command: sessions.SessionCommand) -> bytes:
    return SESSION_COMMAND + sessions.encode_command(command)


def kv_payload(command: kv.KvCommand) -> bytes:
    return KV_PAYLOAD + kv.encode_command(command)


def ns_payload(command: NsCommand) -> bytes:
    return NS_PAYLOAD + ns_codec.encode_command(command)


def system_command(command: NsCommand) -> bytes:
    return SYSTEM_COMMAND + ns_codec.encode_command(command)
