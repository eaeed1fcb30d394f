"""NamespaceMachine: the namespace behind the replicated log (dfs.paxos.machine's
StateMachine), with a typed API beside the bytes one.

`execute` applies a command (the log's path), `query` answers from the current state
without changing it. Deterministic: time comes only from ApplyContext.time_ns, the
caller session from ApplyContext.session; errors are errno values, never exceptions.
"""

from __future__ import annotations

import errno
import logging

from dfs.meta import attrops, codec, dirops, fileops, fsckops, queries, snapshot, validate
from dfs.meta.ops import (
    AckGC,
    AllocChunkIds,
    Command,
    Commit,
    Link,
    MakeNode,
    Query,
    RegisterData,
    ReleaseOrphans,
    Remove,
    RemoveMember,
    RemoveXattr,
    Rename,
    ReportUsage,
    SetAttr,
    SetMemberState,
    SetMemberWeight,
    SetOpenInodes,
    SetReplication,
    SetXattr,
)
from dfs.meta.results import ErrnoResult, Result
from dfs.meta.state import NamespaceState
from dfs.meta.types import DEFAULT_BLOCK_SIZE
from dfs.paxos.machine import ApplyContext

log = logging.getLogger(__name__)


def _dispatch(state: NamespaceState, command: Command, session: int) -> Result:
    match command:
        case MakeNode():
            return dirops.make_node(state, command)
        case Remove():
            return dirops.remove(state, command)
        case Rename():
            return dirops.rename(state, command)
        case Link():
            return dirops.link(state, command)
        case SetAttr():
            return attrops.set_attr(state, command)
        case SetXattr():
            return attrops.set_xattr(state, command)
        case RemoveXattr():
            return attrops.remove_xattr(state, command)
        case AllocChunkIds():
            return fileops.allocate(state, command, session)
        case Commit():
            return fileops.commit(state, command, session)
        case SetOpenInodes():
            return fileops.set_open_inodes(state, command)
        case ReleaseOrphans():
            return fileops.release_orphans(state, command)
        case AckGC():
            return fileops.ack_gc(state, command)
        case fsckops.FsckRepair():
            return fsckops.apply_repair(state, command)
        case _:
            return _ring(state, command)


def _ring(
    state: NamespaceState,
    command: RegisterData
    | SetMemberState
    | SetMemberWeight
    | RemoveMember
    | SetReplication
    | ReportUsage,
) -> ErrnoResult:
    ring = state.ring
    match command:
        case RegisterData():
            code = ring.register(command.id, command.addr, command.weight, command.domain)
        case SetMemberState():
            code = ring.set_state(command.id, command.state)
        case SetMemberWeight():
            code = ring.set_weight(command.id, command.weight)
        case RemoveMember():
            code = ring.remove(command.id)
        case SetReplication():
            code = ring.set_replication(
                command.replicas, command.min_replicas, command.vnodes_per_weight
            )
        case ReportUsage():
            code = ring.report_usage(command.id, command.capacity, command.used)
    return ErrnoResult(code)


class NamespaceMachine:
    """The namespace state machine. Implements dfs.paxos.machine.StateMachine."""

    def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        if not 0 < block_size < validate.U32:
            raise ValueError(f"block size {block_size} out of range")  # slices hold u32 offsets
        self.state = NamespaceState(block_size)
        self._writer: snapshot.SnapshotWriter | None = None

    # ---- typed API ----------------------------------------------------------------

    def execute(self, command: Command, ctx: ApplyContext) -> Result:
        """Applies one command at state time ctx.time_ns for session ctx.session."""
        state = self.state
        if ctx.time_ns > state.now:
            state.now = ctx.time_ns
        if not validate.in_range(command):
            return ErrnoResult(errno.EINVAL)
        return _dispatch(state, command, ctx.session)

    def query(self, query: Query) -> Result:
        """Answers a read-only question; never changes the state."""
        return queries.run(self.state, query)

    # ---- StateMachine (bytes) -------------------------------------------------------

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        try:
            decoded = codec.decode_command(command)
        except codec.CodecError as error:
            # A command no encoder made changes nothing, identically on every replica.
            log.warning("undecodable command at slot %d: %s", ctx.slot, error)
            return codec.encode_result(ErrnoResult(errno.EINVAL))
        return codec.encode_result(self.execute(decoded, ctx))

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        if ctx.time_ns > self.state.now:
            self.state.now = ctx.time_ns
        self.state.chunks.session_closed(session)
        self.state.open_reports.pop(session, None)

    def snapshot(self) -> bytes:
        """The whole state now, in one go (stalls apply for ~3 s per 1M inodes)."""
        return snapshot.encode(self.state)

    def restore(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.state = snapshot.decode(data)

    # ---- snapshots without stalling the log -------------------------------------------

    def begin_snapshot(self) -> None:
        """Starts a snapshot of the state as it is now. Keep applying commands and call
        snapshot_step between them; finish_snapshot returns the bytes `snapshot` would
        have returned at this moment."""
        self._writer = snapshot.SnapshotWriter(self.state)

    def snapshot_step(self, max_inodes: int = 10_000) -> bool:
        """Encodes up to max_inodes more inodes; True when finish_snapshot is cheap."""
        if self._writer is None:
            raise RuntimeError("no snapshot in progress")
        return self._writer.step(max_inodes)

    def finish_snapshot(self) -> bytes:
        """The snapshot's bytes. Once snapshot_step returned True this reads no live
        state (joining ~1M images takes a while) and may run on another thread."""
        if self._writer is None:
            raise RuntimeError("no snapshot in progress")
        writer, self._writer = self._writer, None
        return writer.finish()
