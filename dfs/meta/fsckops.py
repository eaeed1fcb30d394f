"""The fsck repair command and how the state machine applies it.

Every fix carries the value fsck saw and applies only if that value is still
there (compare-and-set): fsck walks a snapshot, and the namespace may have
moved on by the time the repair is chosen. Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfs.meta.results import RepairResult
from dfs.meta.state import NamespaceState
from dfs.meta.types import Kind


@dataclass(frozen=True, slots=True)
class NlinkFix:
    """Set inode `ino`'s nlink from `seen` to `counted`; 0 makes it an orphan,
    freed by the next ReleaseOrphans once no session holds it open."""

    ino: int
    seen: int
    counted: int


@dataclass(frozen=True, slots=True)
class EntryFix:
    """Remove entry `name` of directory `parent`, which names the missing inode `ino`."""

    parent: int
    name: bytes
    ino: int


@dataclass(frozen=True, slots=True)
class ParentFix:
    """Point directory `ino`'s ".." from `seen` to `actual` (the directory holding it)."""

    ino: int
    seen: int
    actual: int


@dataclass(frozen=True, slots=True)
class ChunkRefFix:
    """Set chunk `chunk_id`'s reference count from `seen` to `counted`; 0 releases it
    to the GC queue."""

    chunk_id: int
    seen: int
    counted: int


@dataclass(frozen=True, slots=True)
class FsckRepair:
    """Leader-proposed (dfs admin fsck --repair): the fixes of one fsck run."""

    nlinks: tuple[NlinkFix, ...] = ()
    dangling: tuple[EntryFix, ...] = ()
    parents: tuple[ParentFix, ...] = ()
    chunk_refs: tuple[ChunkRefFix, ...] = ()

    def __len__(self) -> int:
        return len(self.nlinks) + len(self.dangling) + len(self.parents) + len(self.chunk_refs)


def _nlink(state: NamespaceState, fix: NlinkFix) -> bool:
    inode = state.inodes.get(fix.ino)
    if inode is None or inode.nlink != fix.seen or fix.ino in state.orphans:
        return False
    state.changing(inode)
    inode.nlink = fix.counted
    if fix.counted == 0:
        state.orphans[fix.ino] = state.now
    return True


def _entry(state: NamespaceState, fix: EntryFix) -> bool:
    parent = state.inodes.get(fix.parent)
    if parent is None or parent.kind != Kind.DIRECTORY or fix.ino in state.inodes:
        return False
    if parent.directory.get(fix.name) != fix.ino:
        return False
    state.changing(parent)
    parent.directory.remove(fix.name)
    return True


def _parent(state: NamespaceState, fix: ParentFix) -> bool:
    inode = state.inodes.get(fix.ino)
    if inode is None or inode.kind != Kind.DIRECTORY or inode.directory.parent != fix.seen:
        return False
    state.changing(inode)
    inode.directory.parent = fix.actual
    return True


def _chunk_refs(state: NamespaceState, fix: ChunkRefFix) -> bool:
    refs = state.chunks.refs
    if refs.get(fix.chunk_id, 0) != fix.seen:
        return False
    if fix.counted:
        refs[fix.chunk_id] = fix.counted
    else:
        refs.pop(fix.chunk_id, None)
        state.chunks.gc_queue[fix.chunk_id] = None
    return True


def apply_repair(state: NamespaceState, op: FsckRepair) -> RepairResult:
    outcomes = [
        *(_nlink(state, fix) for fix in op.nlinks),
        *(_entry(state, fix) for fix in op.dangling),
        *(_parent(state, fix) for fix in op.parents),
        *(_chunk_refs(state, fix) for fix in op.chunk_refs),
    ]
    applied = sum(outcomes)
    return RepairResult(applied=applied, skipped=len(outcomes) - applied)
