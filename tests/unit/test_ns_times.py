"""Which operations set which times, in state time (ApplyContext.time_ns), as Linux
does: names change the directory's mtime and ctime, attribute changes the ctime,
content changes the mtime too; utimensat's NOW, OMIT and values; reads change none."""

from __future__ import annotations

from dfs.meta.ops import (
    AllocChunkIds,
    BlockUpdate,
    Commit,
    GetAttr,
    Link,
    MakeNode,
    ReadDir,
    Remove,
    Rename,
    SetAttr,
    SetXattr,
)
from dfs.meta.results import AllocResult, AttrResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Attr, Kind, Slice, TimeSet
from dfs.paxos.machine import ApplyContext


class Timeline:
    def __init__(self) -> None:
        self.machine = NamespaceMachine(block_size=4096)
        self.now = 1_000

    def at(self, time_ns: int, command: object) -> object:
        self.now = time_ns
        result = self.machine.execute(command, ApplyContext(1, 0, time_ns, 1))  # type: ignore[arg-type]
        assert getattr(result, "errno", 0) == 0, result
        return result

    def attr(self, ino: int) -> Attr:
        result = self.machine.query(GetAttr(ROOT, ino))
        assert isinstance(result, AttrResult) and result.attr is not None
        return result.attr

    def times(self, ino: int) -> tuple[int, int, int]:
        attr = self.attr(ino)
        return attr.atime_ns, attr.mtime_ns, attr.ctime_ns


def test_names_touch_the_directory_and_attributes_the_ctime() -> None:
    line = Timeline()
    made = line.at(10, MakeNode(ROOT, ROOT_INO, b"d", Kind.DIRECTORY, 0o755))
    assert isinstance(made, AttrResult) and made.attr is not None
    directory = made.attr.ino
    assert line.times(directory) == (10, 10, 10)
    assert line.times(ROOT_INO)[1:] == (10, 10)
    made = line.at(20, MakeNode(ROOT, directory, b"f", Kind.REGULAR, 0o644))
    assert isinstance(made, AttrResult) and made.attr is not None
    ino = made.attr.ino
    assert line.times(directory) == (10, 20, 20)
    line.at(30, SetAttr(ROOT, ino, mode=0o600))
    assert line.times(ino) == (20, 20, 30)
    line.at(40, Link(ROOT, ino, ROOT_INO, b"g"))
    assert line.times(ino) == (20, 20, 40)
    assert line.times(ROOT_INO)[1:] == (40, 40)
    line.at(50, Rename(ROOT, directory, b"f", ROOT_INO, b"h"))
    assert line.times(ino) == (20, 20, 50)
    assert line.times(directory) == (10, 50, 50)
    line.at(60, SetXattr(ROOT, ino, b"user.a", b"v"))
    assert line.times(ino) == (20, 20, 60)
    line.at(70, Remove(ROOT, ROOT_INO, b"g", False))
    assert line.times(ino) == (20, 20, 70)
    assert line.times(ROOT_INO)[1:] == (70, 70)


def test_content_changes_set_mtime_and_ctime() -> None:
    line = Timeline()
    made = line.at(10, MakeNode(ROOT, ROOT_INO, b"f", Kind.REGULAR, 0o644))
    assert isinstance(made, AttrResult) and made.attr is not None
    ino = made.attr.ino
    allocated = line.at(15, AllocChunkIds(1))
    assert isinstance(allocated, AllocResult)
    update = BlockUpdate(0, (Slice(0, 10, allocated.first, 0, 1),))
    line.at(20, Commit(ROOT, ino, (update,), 10))
    assert line.times(ino) == (10, 20, 20)
    line.at(30, SetAttr(ROOT, ino, size=3))
    assert line.times(ino) == (10, 30, 30)


def test_utimensat_now_omit_and_values() -> None:
    line = Timeline()
    made = line.at(10, MakeNode(ROOT, ROOT_INO, b"f", Kind.REGULAR, 0o644))
    assert isinstance(made, AttrResult) and made.attr is not None
    ino = made.attr.ino
    line.at(20, SetAttr(ROOT, ino, atime_set=TimeSet.NOW, mtime_set=TimeSet.OMIT))
    assert line.times(ino) == (20, 10, 20)
    line.at(30, SetAttr(ROOT, ino, atime_set=TimeSet.VALUE, atime_ns=-5, mtime_set=TimeSet.NOW))
    assert line.times(ino) == (-5, 30, 30)
    line.at(40, SetAttr(ROOT, ino, mtime_set=TimeSet.VALUE, mtime_ns=123))
    assert line.times(ino) == (-5, 123, 40)


def test_state_time_never_runs_backwards_and_reads_change_nothing() -> None:
    line = Timeline()
    line.at(100, MakeNode(ROOT, ROOT_INO, b"a", Kind.REGULAR, 0o644))
    made = line.at(50, MakeNode(ROOT, ROOT_INO, b"b", Kind.REGULAR, 0o644))  # a stale stamp
    assert isinstance(made, AttrResult) and made.attr is not None
    assert line.times(made.attr.ino) == (100, 100, 100)
    before = line.times(made.attr.ino)
    line.machine.query(ReadDir(ROOT, ROOT_INO, 0, 10, True))
    line.machine.query(GetAttr(ROOT, made.attr.ino))
    assert line.times(made.attr.ino) == before
