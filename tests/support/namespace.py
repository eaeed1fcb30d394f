"""A namespace state machine driven in process with an advancing clock, for the
namespace's unit tests: commands in, typed results out."""

from __future__ import annotations

from dfs.meta.ops import AllocChunkIds, BlockUpdate, Commit, MakeNode
from dfs.meta.results import AllocResult, AttrResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Kind, Slice
from dfs.paxos.machine import ApplyContext


class Clock:
    def __init__(self) -> None:
        self.machine = NamespaceMachine(block_size=1024)
        self.time_ns = 0

    def run(self, command: object, session: int = 1) -> object:
        self.time_ns += 10
        ctx = ApplyContext(1, 0, self.time_ns, session)
        return self.machine.execute(command, ctx)  # type: ignore[arg-type]

    def create(self, name: bytes, kind: Kind = Kind.REGULAR, parent: int = ROOT_INO) -> int:
        result = self.run(MakeNode(ROOT, parent, name, kind, 0o755))
        assert isinstance(result, AttrResult) and result.attr is not None, result
        return result.attr.ino

    def alloc(self, count: int, session: int = 1) -> int:
        result = self.run(AllocChunkIds(count), session)
        assert isinstance(result, AllocResult) and result.errno == 0
        return result.first

    def commit(self, ino: int, chunk_id: int, session: int = 1, block: int = 0) -> int:
        update = BlockUpdate(block, (Slice(0, 100, chunk_id, 0, 3),))
        result = self.run(Commit(ROOT, ino, (update,), block * 1024 + 100), session)
        assert isinstance(result, AttrResult)
        return result.errno
