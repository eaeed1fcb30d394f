"""fsck of a namespace image: each kind of damage is found, the repair fixes
exactly it through the log's encoding, and a repair made stale by a later
change is skipped instead of undoing that change."""

from __future__ import annotations

from dfs.meta import codec, fsck
from dfs.meta.fsckops import FsckRepair
from dfs.meta.ops import Link, Remove
from dfs.meta.results import AttrResult, RepairResult
from dfs.meta.types import ROOT, ROOT_INO, Kind
from dfs.paxos.machine import ApplyContext
from tests.support.namespace import Clock


class Namespace(Clock):
    def write(self, ino: int) -> int:
        chunk_id = self.alloc(1)
        assert self.commit(ino, chunk_id) == 0
        return chunk_id

    def repair(self, repair: FsckRepair) -> RepairResult:
        # Through the log's bytes, as the leader proposes it.
        self.time_ns += 10
        ctx = ApplyContext(1, 0, self.time_ns, 0)
        result = codec.decode_result(self.machine.apply(codec.encode_command(repair), ctx))
        assert isinstance(result, RepairResult)
        return result


def populated() -> tuple[Namespace, dict[str, int]]:
    ns = Namespace()
    top = ns.create(b"top", Kind.DIRECTORY)
    sub = ns.create(b"sub", Kind.DIRECTORY, top)
    file = ns.create(b"file", parent=sub)
    ns.write(file)
    assert isinstance(ns.run(Link(ROOT, file, ROOT_INO, b"hard")), AttrResult)
    ns.create(b"empty")
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
    lost = ns.create(b"lost", parent=inos["top"])
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
