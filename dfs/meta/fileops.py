"""File contents as block maps: commits of written slices, compaction, truncation,
chunk-id ranges, open-inode reports, orphan release and the GC acknowledgements.

Keeps the invariant that every chunk's reference count equals the number of slices
naming it, and that no slice covers bytes at or past the file size.
"""

from __future__ import annotations

import errno

from dfs.meta import blocks, perms
from dfs.meta.inode import Inode
from dfs.meta.ops import (
    AckGC,
    AllocChunkIds,
    BlockUpdate,
    Commit,
    ReleaseOrphans,
    SetOpenInodes,
)
from dfs.meta.results import AllocResult, AttrResult, ErrnoResult
from dfs.meta.state import NamespaceState
from dfs.meta.types import MAX_FILE_SIZE, Kind, Slice

MAX_ALLOC = 1 << 20  # ids per allocation; a client asks again rather than hoard


def allocate(state: NamespaceState, op: AllocChunkIds, session: int) -> AllocResult:
    if session == 0:
        return AllocResult(errno.ESTALE)
    if not 0 < op.count <= MAX_ALLOC:
        return AllocResult(errno.EINVAL)
    first = state.chunks.allocate(session, op.count)
    return AllocResult(0, first, op.count)


def resize(state: NamespaceState, inode: Inode, size: int) -> None:
    """Sets the size; shrinking trims and drops slices so growing again reads zeros."""
    block_map = inode.block_map()
    if block_map and size < inode.size:
        block_size = state.block_size
        first_gone = -(-size // block_size)
        for block in [b for b in block_map if b >= first_gone]:
            state.chunks.drop_refs(s.chunk_id for s in block_map.pop(block))
        cut = size % block_size
        partial = block_map.get(size // block_size) if cut else None
        if partial is not None:
            state.chunks.drop_refs(s.chunk_id for s in blocks.trim(partial, cut))
            if not partial:
                del block_map[size // block_size]
    inode.size = size


def commit(state: NamespaceState, op: Commit, session: int) -> AttrResult:
    inode = state.inodes.get(op.ino)
    if inode is None:
        return AttrResult(errno.ENOENT)
    if inode.kind == Kind.DIRECTORY:
        return AttrResult(errno.EISDIR)
    if inode.kind != Kind.REGULAR:
        return AttrResult(errno.EINVAL)
    failure = _commit_error(state, inode, op, session)
    if failure:
        return AttrResult(failure)
    state.changing(inode)
    inode.size = max(inode.size, op.end)
    for update in op.updates:
        _apply_update(state, inode, update)
    if not all(update.replace for update in op.updates):
        # A compaction alone changes no byte: times and mode stay, so caches keyed on
        # mtime (close-to-open, the kernel's page cache) stay valid.
        inode.mtime = inode.ctime = state.now
        inode.mode = perms.without_privileges(inode, op.caller)
    return AttrResult(0, state.attr(inode))


def _commit_error(state: NamespaceState, inode: Inode, op: Commit, session: int) -> int:
    if not 0 <= op.end <= MAX_FILE_SIZE:
        return errno.EFBIG
    size_after = max(inode.size, op.end)
    block_size = state.block_size
    chunks = state.chunks
    block_map = inode.block_map() or {}
    for update in op.updates:
        if update.block < 0:
            return errno.EINVAL
        for piece in update.slices:
            if piece.length <= 0 or piece.offset < 0 or piece.offset_in_chunk < 0:
                return errno.EINVAL
            if piece.offset + piece.length > block_size:
                return errno.EINVAL
            if update.block * block_size + piece.offset + piece.length > size_after:
                return errno.EINVAL
            if not chunks.owned_by(session, piece.chunk_id) or piece.chunk_id in chunks.gc_queue:
                return errno.ESTALE
        if update.replace:
            current = block_map.get(update.block, [])
            if update.replaces_count <= 0 or len(current) < update.replaces_count:
                return errno.EAGAIN
            last = current[update.replaces_count - 1]
            if update.replaces_last_chunk and last.chunk_id != update.replaces_last_chunk:
                return errno.EAGAIN
    return 0


def _apply_update(state: NamespaceState, inode: Inode, update: BlockUpdate) -> None:
    block_map = inode.blocks()
    current = block_map.setdefault(update.block, [])
    chunks = state.chunks
    if update.replace:
        replaced = current[: update.replaces_count]
        merged: list[Slice] = blocks.clip(list(update.slices), blocks.coverage(replaced))
        current[: update.replaces_count] = merged
        for piece in merged:
            chunks.add_ref(piece.chunk_id)
        chunks.drop_refs(s.chunk_id for s in replaced)
    else:
        for piece in update.slices:
            chunks.add_ref(piece.chunk_id)
            chunks.drop_refs(s.chunk_id for s in blocks.overlay(current, piece))
    if not current:
        del block_map[update.block]


def set_open_inodes(state: NamespaceState, op: SetOpenInodes) -> ErrnoResult:
    if op.inodes:
        state.open_reports[op.session] = tuple(sorted(set(op.inodes)))
    else:
        state.open_reports.pop(op.session, None)
    return ErrnoResult(0)


def release_orphans(state: NamespaceState, op: ReleaseOrphans) -> ErrnoResult:
    held_open = {ino for inodes in state.open_reports.values() for ino in inodes}
    releasable = [
        ino
        for ino, orphaned_at in state.orphans.items()
        if orphaned_at < op.orphaned_before_ns and ino not in held_open
    ]
    for ino in releasable:
        del state.orphans[ino]
        state.changing(state.inodes[ino])
        inode = state.inodes.pop(ino)
        for slices in (inode.block_map() or {}).values():
            state.chunks.drop_refs(s.chunk_id for s in slices)
    return ErrnoResult(0)


def ack_gc(state: NamespaceState, op: AckGC) -> ErrnoResult:
    state.chunks.ack_gc(op.chunk_ids)
    return ErrnoResult(0)
