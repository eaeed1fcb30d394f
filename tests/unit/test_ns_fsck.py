"""fsck of a namespace image: each kind of damage is found, the repair fixes
exactly it through the log's encoding, and a repair made stale by a later
change is skipped instead of undoing that change."""

from __future__ import annotations

from dfs.meta import codec, fsck
from dfs.meta.fsckops import FsckRepair
from dfs.meta.ops import AllocChunkIds, BlockUpdate, Commit, Link, MakeNode, Remove
from dfs.meta.results import AllocResult, AttrResult, RepairResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Kind, Slice
from dfs.paxos.machine import ApplyContext


class Namespace:
    def __init__(self) -> None:
        self.machine = NamespaceMachine(block_size=1024)
        self.time_ns = 0

    def run(self, command: object, session: int = 1) -> object:
        self.time_ns += 10
        ctx = ApplyContext(1, 0, self.time_ns, session)
        return self.machine.execute(command, ctx)  # type: ignore[arg-type]

    def make(self, name: bytes, kind: Kind = Kind.REGULAR, parent: int = ROOT_INO) -> int:
        result = self.run(MakeNode(ROOT, parent, name, kind, 0o755))
        assert isinstance(result, AttrResult) and result.attr is not None, result
        return result.attr.ino

    def write(self, ino: int) -> int:
        alloc = self.run(AllocChunkIds(1))
        assert isinstance(alloc, AllocResult)
        update = BlockUpdate(0, (Slice(0, 100, alloc.first, 0, 1),))
        assert isinstance(self.run(Commit(ROOT, ino, (update,), 100)), AttrResult)
        return alloc.first

    def repair(self, repair: FsckRepair) -> RepairResult:
        # Through the log's bytes, as the leader proposes it.
        self.time_ns += 10
        ctx = ApplyContext(1, 0, self.time_ns, 0)
        raw = self.machine.apply(codec.encode_command(repair), ctx)
        result = codec.decode_result(raw)
        assert isinstance(result, RepairResult)
        return result


def populated() -> tuple[Namespace, dict[str, int]]:
    ns = Namespace()
    top = ns.make(b"top", Kind.DIRECTORY)
    sub = ns.make(b"sub", Kind.DIRECTORY, top)
    file = ns.make(b"file", parent=sub)
    ns.write(file)
    assert isinstance(ns.run(Link(ROOT, file, ROOT_INO, b"hard")), AttrResult)
    ns.make(b"empty")
    return ns, {"top": top, "sub": sub, "file": file}


def problems(report: fsck.NamespaceReport) -> set[tuple[fsck.Problem, int]]:
    return {(finding.problem, finding.ino) for finding in report.findings}


def test_a_healthy_namespace_has_no_findings() -> None:
    ns, inos = populated()
    report = fsck.check(ns.machine.state)
    assert report.findings == [] and len(report.repair) == 0
    assert (report.inodes, report.directories, report.files) == (5, 3, 2)
    (chunk,) = report.chunk_refs
    assert report.chunk_owners[chunk] == [inos["file"]]


def test_each_kind_of_damage_is_found_and_repaired() -> None:
    ns, inos = populated()
    state = ns.machine.state
    state.inodes[inos["file"]].nlink = 7  # link-count mismatch (2 names)
    state.inodes[ROOT_INO].directory.add(b"ghost", 9999)  # dangling entry
    state.inodes[inos["sub"]].directory.parent = ROOT_INO  # wrong ".."
    (chunk,) = state.chunks.refs
    state.chunks.refs[chunk] = 3  # reference count mismatch
    lost = ns.make(b"lost", parent=inos["top"])
    state.inodes[inos["top"]].directory.remove(b"lost")  # unreachable, not an orphan

    report = fsck.check(state)
    assert problems(report) == {
        (fsck.Problem.NLINK_MISMATCH, inos["file"]),
        (fsck.Problem.DANGLING_ENTRY, ROOT_INO),
        (fsck.Problem.BAD_PARENT, inos["sub"]),
        (fsck.Problem.CHUNK_REFS_MISMATCH, chunk),
        (fsck.Problem.UNREACHABLE_INODE, lost),
    }
    assert all(finding.repairable for finding in report.findings)
    assert ns.repair(report.repair) == RepairResult(applied=5, skipped=0)
    assert fsck.check(state).findings == []
    assert state.inodes[inos["file"]].nlink == 2 and state.chunks.refs[chunk] == 1
    assert lost in state.orphans  # released by the next ReleaseOrphans, like any orphan


def test_a_repair_made_stale_by_a_later_change_is_skipped() -> None:
    ns, inos = populated()
    state = ns.machine.state
    state.inodes[inos["file"]].nlink = 5
    report = fsck.check(state)
    # Between the check and the repair a client unlinks one name: nlink moves on,
    # so the fix (which saw 5) must not apply.
    assert ns.run(Remove(ROOT, ROOT_INO, b"hard", False)) is not None
    assert state.inodes[inos["file"]].nlink == 4
    assert ns.repair(report.repair) == RepairResult(applied=0, skipped=1)
    assert state.inodes[inos["file"]].nlink == 4
    # A second check sees the remaining damage and repairs it.
    assert ns.repair(fsck.check(state).repair) == RepairResult(applied=1, skipped=0)
    assert state.inodes[inos["file"]].nlink == 1
