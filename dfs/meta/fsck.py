"""Consistency check of a namespace image, and the repairs it can propose.

Pure: `check` reads a NamespaceState (in practice one decoded from a snapshot,
so the live state keeps serving while a large namespace is walked) and returns
what is wrong with it, plus the chunk references it counted, which the caller
compares with what the data servers hold. Each repair names the value it saw,
and the state machine applies it only if that value is still there
(compare-and-set), so a repair computed from an older image never undoes a
change made since.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from dfs.meta.fsckops import ChunkRefFix, EntryFix, FsckRepair, NlinkFix, ParentFix
from dfs.meta.inode import Directory
from dfs.meta.state import NamespaceState
from dfs.meta.types import ROOT_INO, Kind


class Problem(enum.Enum):
    DANGLING_ENTRY = "dangling entry"
    NLINK_MISMATCH = "link count mismatch"
    BAD_PARENT = "wrong parent"
    UNREACHABLE_INODE = "unreachable inode"
    CHUNK_REFS_MISMATCH = "chunk reference count mismatch"


@dataclass(frozen=True)
class Finding:
    problem: Problem
    ino: int  # the inode (or, for chunk findings, the chunk id)
    detail: str
    repairable: bool


@dataclass
class NamespaceReport:
    findings: list[Finding] = field(default_factory=list)
    inodes: int = 0
    directories: int = 0
    files: int = 0
    # chunk id -> slices naming it, as counted from the block maps
    chunk_refs: Counter[int] = field(default_factory=Counter)
    # chunk id -> the inodes whose data it holds (for reporting lost files)
    chunk_owners: dict[int, list[int]] = field(default_factory=dict)
    # ino -> (directory, name) of the first name found for it, to print paths
    names: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    repair: FsckRepair = field(default_factory=FsckRepair)

    def path_of(self, ino: int) -> str:
        """A path of `ino` in the checked image ("?" parts where none is known)."""
        parts: list[str] = []
        seen: set[int] = set()
        while ino != ROOT_INO and ino not in seen:
            seen.add(ino)
            where = self.names.get(ino)
            if where is None:
                parts.append(f"?{ino}")
                break
            ino, name = where
            parts.append(name.decode(errors="replace"))
        return "/" + "/".join(reversed(parts))

    def subtree(self, top: int) -> set[int]:
        """Inodes named at or below directory `top` in the checked image."""
        children: dict[int, list[int]] = {}
        for ino, (parent, _name) in self.names.items():
            children.setdefault(parent, []).append(ino)
        found, pending = {top}, [top]
        while pending:
            for child in children.get(pending.pop(), ()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
        return found


def _expected_nlink(kind: Kind, names: int, subdirectories: int) -> int:
    # A directory counts its name in the parent, its own ".", and each child's "..".
    return 2 + subdirectories if kind == Kind.DIRECTORY else names


def check(state: NamespaceState) -> NamespaceReport:
    report = NamespaceReport()
    names: Counter[int] = Counter()  # ino -> directory entries naming it
    subdirectories: Counter[int] = Counter()
    reached = {ROOT_INO}
    dangling: list[EntryFix] = []
    parents: list[ParentFix] = []
    pending = [ROOT_INO]
    while pending:
        parent_ino = pending.pop()
        directory: Directory = state.inodes[parent_ino].directory
        for name, ino, _cookie in directory.iter_from(0):
            child = state.inodes.get(ino)
            if child is None:
                report.findings.append(Finding(
                    Problem.DANGLING_ENTRY, parent_ino,
                    f"entry {name!r} of directory {parent_ino} names missing inode {ino}", True))
                dangling.append(EntryFix(parent_ino, name, ino))
                continue
            names[ino] += 1
            report.names.setdefault(ino, (parent_ino, name))
            if child.kind != Kind.DIRECTORY:
                continue
            subdirectories[parent_ino] += 1
            if child.directory.parent != parent_ino:
                report.findings.append(Finding(
                    Problem.BAD_PARENT, ino,
                    f"directory {ino} says its parent is {child.directory.parent}, "
                    f"but {parent_ino} holds it", True))
                parents.append(ParentFix(ino, child.directory.parent, parent_ino))
            if ino not in reached:
                reached.add(ino)
                pending.append(ino)
    nlinks: list[NlinkFix] = []
    for ino, inode in state.inodes.items():
        report.inodes += 1
        if inode.kind == Kind.DIRECTORY:
            report.directories += 1
        elif inode.kind == Kind.REGULAR:
            report.files += 1
            for slices in (inode.block_map() or {}).values():
                for piece in slices:
                    report.chunk_refs[piece.chunk_id] += 1
                    owners = report.chunk_owners.setdefault(piece.chunk_id, [])
                    if not owners or owners[-1] != ino:
                        owners.append(ino)
        if ino in state.orphans:
            continue  # nlink 0, held open: freed by ReleaseOrphans, not reachable by design
        if ino != ROOT_INO and names[ino] == 0:
            report.findings.append(Finding(
                Problem.UNREACHABLE_INODE, ino,
                f"inode {ino} ({inode.kind.name.lower()}, nlink {inode.nlink}) has no name "
                "and is not an open orphan; repair releases it", True))
            nlinks.append(NlinkFix(ino, inode.nlink, 0))
            continue
        expected = _expected_nlink(inode.kind, names[ino], subdirectories[ino])
        if inode.nlink != expected:
            report.findings.append(Finding(
                Problem.NLINK_MISMATCH, ino,
                f"inode {ino} has nlink {inode.nlink}, {expected} counted", True))
            nlinks.append(NlinkFix(ino, inode.nlink, expected))
    refs: list[ChunkRefFix] = []
    stored = state.chunks.refs
    for chunk_id in sorted(set(stored) | set(report.chunk_refs)):
        counted, recorded = report.chunk_refs.get(chunk_id, 0), stored.get(chunk_id, 0)
        if counted != recorded:
            report.findings.append(Finding(
                Problem.CHUNK_REFS_MISMATCH, chunk_id,
                f"chunk {chunk_id} has {recorded} references recorded, {counted} counted", True))
            refs.append(ChunkRefFix(chunk_id, recorded, counted))
    report.repair = FsckRepair(tuple(nlinks), tuple(dangling), tuple(parents), tuple(refs))
    return report
