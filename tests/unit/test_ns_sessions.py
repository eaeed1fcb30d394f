"""The namespace behind the generic exactly-once session layer (dfs/paxos/sessions.py):
retries get their first answer, an expired writer's chunk ranges are gone (ESTALE), and
the stacked snapshot round-trips."""

from __future__ import annotations

import errno
import struct

from dfs.meta import codec
from dfs.meta.ops import AllocChunkIds, BlockUpdate, Command, Commit, MakeNode
from dfs.meta.results import AllocResult, AttrResult, Result
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Kind, Slice
from dfs.paxos import sessions
from dfs.paxos.machine import ApplyContext

TIMEOUT_NS = 1_000


class Stack:
    def __init__(self) -> None:
        self.machine = NamespaceMachine(block_size=4096)
        self.table = sessions.SessionTable(self.machine, TIMEOUT_NS)
        self.slot = 0
        self.time_ns = 0

    def submit(self, command: sessions.SessionCommand) -> sessions.SessionResult:
        self.slot += 1
        raw = self.table.apply(sessions.encode_command(command), ApplyContext(self.slot, 0, 0, 0))
        return sessions.decode_result(raw)

    def open(self) -> int:
        self.time_ns += 1
        result = self.submit(sessions.OpenSession(self.time_ns))
        session: int = struct.unpack(">Q", result.payload)[0]
        return session

    def request(self, session: int, sequence: int, command: Command) -> tuple[int, Result | None]:
        self.time_ns += 1
        payload = codec.encode_command(command)
        result = self.submit(sessions.SessionRequest(session, sequence, 0, self.time_ns, payload))
        if result.status:
            return result.status, None
        return 0, codec.decode_result(result.payload)

    def tick(self, advance_ns: int) -> None:
        self.time_ns += advance_ns
        self.submit(sessions.Tick(self.time_ns, 1, 1))


def test_retry_gets_the_first_answer_and_expiry_drops_chunk_ranges() -> None:
    stack = Stack()
    stack.tick(0)  # the leadership's first tick
    writer = stack.open()
    status, made = stack.request(writer, 1, MakeNode(ROOT, ROOT_INO, b"f", Kind.REGULAR, 0o644))
    assert status == 0 and isinstance(made, AttrResult) and made.attr is not None
    retried = stack.request(writer, 1, MakeNode(ROOT, ROOT_INO, b"f", Kind.REGULAR, 0o644))
    assert retried == (0, made)  # not EEXIST: applied once
    status, allocated = stack.request(writer, 2, AllocChunkIds(16))
    assert isinstance(allocated, AllocResult) and allocated.errno == 0
    update = BlockUpdate(0, (Slice(0, 10, allocated.first, 0, 1),))
    commit = Commit(ROOT, made.attr.ino, (update,), 10)
    status, committed = stack.request(writer, 3, commit)
    assert isinstance(committed, AttrResult) and committed.errno == 0

    stack.tick(TIMEOUT_NS * 2)  # the writer goes silent past its timeout
    assert writer not in stack.table.live_sessions()
    assert writer not in stack.machine.state.chunks.ranges
    status, _ = stack.request(writer, 4, commit)
    assert status == errno.ESTALE  # refused by the session layer
    # A new session cannot commit the old session's ids either.
    other = stack.open()
    late = Commit(
        ROOT, made.attr.ino, (BlockUpdate(0, (Slice(0, 5, allocated.first + 1, 0, 1),)),), 5
    )
    status, refused = stack.request(other, 1, late)
    assert status == 0 and refused == AttrResult(errno.ESTALE)


def test_stacked_snapshot_round_trips() -> None:
    stack = Stack()
    stack.tick(0)
    session = stack.open()
    stack.request(session, 1, MakeNode(ROOT, ROOT_INO, b"d", Kind.DIRECTORY, 0o755))
    stack.request(session, 2, AllocChunkIds(4))
    image = stack.table.snapshot()
    restored = sessions.SessionTable(NamespaceMachine(block_size=4096), TIMEOUT_NS)
    restored.restore(image)
    assert restored.snapshot() == image
