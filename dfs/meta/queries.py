"""Read-only questions about the current state: lookup, getattr, readdir, readlink,
xattrs, statfs, access, open's permission check, block maps, chunk references, GC queue.

Must never change the state (no atime updates: dfs behaves like a noatime mount unless
a client sets times explicitly).
"""

from __future__ import annotations

import errno
import heapq
import itertools

from dfs.meta import perms
from dfs.meta.attrops import TRUSTED_PREFIX, xattr_name_error, xattr_permission
from dfs.meta.ops import (
    Access,
    FetchGC,
    GetAttr,
    GetBlockMap,
    GetRing,
    GetXattr,
    ListChunkRefs,
    ListXattr,
    Lookup,
    Open,
    Query,
    ReadDir,
    Readlink,
    StatFs,
)
from dfs.meta.results import (
    AttrResult,
    BlockMapResult,
    ChunkRefsResult,
    DirEntry,
    ErrnoResult,
    GCResult,
    ListXattrResult,
    OpenResult,
    ReadDirResult,
    ReadlinkResult,
    Result,
    RingResult,
    StatFsResult,
    XattrResult,
)
from dfs.meta.state import DOT, DOTDOT, NamespaceState, name_error
from dfs.meta.types import (
    MAX_INODES,
    NAME_MAX,
    O_ACCMODE,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    R_OK,
    STATFS_BSIZE,
    W_OK,
    BlockMap,
    Kind,
)


def lookup(state: NamespaceState, q: Lookup) -> AttrResult:
    failure, parent = state.directory(q.parent, q.caller)
    if parent is None:
        return AttrResult(failure)
    if q.name == DOT:
        return AttrResult(0, state.attr(parent))
    if q.name == DOTDOT:
        return AttrResult(0, state.attr(state.inodes[parent.directory.parent]))
    failure = name_error(q.name)
    if failure:
        return AttrResult(failure)
    child = state.child(parent, q.name)
    if child is None:
        return AttrResult(errno.ENOENT)
    return AttrResult(0, state.attr(child))


def get_attr(state: NamespaceState, q: GetAttr) -> AttrResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return AttrResult(errno.ENOENT)
    return AttrResult(0, state.attr(inode))


def read_dir(state: NamespaceState, q: ReadDir) -> ReadDirResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return ReadDirResult(errno.ENOENT)
    if inode.kind != Kind.DIRECTORY:
        return ReadDirResult(errno.ENOTDIR)
    if not perms.permitted(inode, q.caller, R_OK):
        return ReadDirResult(errno.EACCES)
    if q.limit <= 0:
        return ReadDirResult(errno.EINVAL)
    entries: list[DirEntry] = []
    for name, ino, cookie in inode.directory.iter_from(q.cookie):
        if len(entries) == q.limit:
            return ReadDirResult(0, tuple(entries), eof=False)
        child = state.inodes[ino]
        attr = state.attr(child) if q.with_attrs else None
        entries.append(DirEntry(name, ino, child.kind, cookie, attr))
    return ReadDirResult(0, tuple(entries), eof=True)


def read_link(state: NamespaceState, q: Readlink) -> ReadlinkResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return ReadlinkResult(errno.ENOENT)
    if inode.kind != Kind.SYMLINK:
        return ReadlinkResult(errno.EINVAL)
    return ReadlinkResult(0, inode.target)


def get_xattr(state: NamespaceState, q: GetXattr) -> XattrResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return XattrResult(errno.ENOENT)
    failure = xattr_name_error(q.name) or xattr_permission(inode, q.caller, q.name, write=False)
    if failure:
        return XattrResult(failure)
    value = (inode.xattrs or {}).get(q.name)
    if value is None:
        return XattrResult(errno.ENODATA)
    if q.size and len(value) > q.size:
        return XattrResult(errno.ERANGE)
    return XattrResult(0, value)


def list_xattr(state: NamespaceState, q: ListXattr) -> ListXattrResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return ListXattrResult(errno.ENOENT)
    names = tuple(
        name
        for name in sorted(inode.xattrs or ())
        if q.caller.is_root or not name.startswith(TRUSTED_PREFIX)
    )
    if q.size and sum(len(name) + 1 for name in names) > q.size:
        return ListXattrResult(errno.ERANGE)
    return ListXattrResult(0, names)


def stat_fs(state: NamespaceState, q: StatFs) -> StatFsResult:
    total, free = state.ring.capacity()
    blocks = total // STATFS_BSIZE
    bfree = free // STATFS_BSIZE
    return StatFsResult(
        errno=0,
        bsize=STATFS_BSIZE,
        blocks=blocks,
        bfree=bfree,
        bavail=bfree,
        files=MAX_INODES,
        ffree=MAX_INODES - len(state.inodes),
        namemax=NAME_MAX,
    )


def access(state: NamespaceState, q: Access) -> ErrnoResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return ErrnoResult(errno.ENOENT)
    if q.mask & ~7:
        return ErrnoResult(errno.EINVAL)
    if q.mask and not perms.permitted(inode, q.caller, q.mask):
        return ErrnoResult(errno.EACCES)
    return ErrnoResult(0)


_ACCESS_MASK = {O_RDONLY: R_OK, O_WRONLY: W_OK, O_RDWR: R_OK | W_OK}


def open_file(state: NamespaceState, q: Open) -> OpenResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return OpenResult(errno.ENOENT)
    accmode = q.flags & O_ACCMODE
    if accmode not in _ACCESS_MASK:
        return OpenResult(errno.EINVAL)
    if inode.kind == Kind.SYMLINK:
        return OpenResult(errno.ELOOP)
    mask = _ACCESS_MASK[accmode] | (W_OK if q.flags & O_TRUNC else 0)
    if inode.kind == Kind.DIRECTORY and mask & W_OK:
        return OpenResult(errno.EISDIR)
    if not perms.permitted(inode, q.caller, mask):
        return OpenResult(errno.EACCES)
    return OpenResult(0, state.attr(inode), state.block_size)


def get_block_map(state: NamespaceState, q: GetBlockMap) -> BlockMapResult:
    inode = state.inodes.get(q.ino)
    if inode is None:
        return BlockMapResult(errno.ENOENT)
    if inode.kind == Kind.DIRECTORY:
        return BlockMapResult(errno.EISDIR)
    if inode.kind != Kind.REGULAR:
        return BlockMapResult(errno.EINVAL)
    block_map = inode.block_map() or {}
    end = q.first_block + q.count if q.count else None
    selected = sorted(
        block for block in block_map if block >= q.first_block and (end is None or block < end)
    )
    maps = tuple(BlockMap(block, tuple(block_map[block])) for block in selected)
    return BlockMapResult(0, maps, inode.size)


def list_chunk_refs(state: NamespaceState, q: ListChunkRefs) -> ChunkRefsResult:
    refs = state.chunks.refs
    # One pass, keeping only the page (and one more to know whether it is the last).
    page = heapq.nsmallest(max(q.limit, 0) + 1, (c for c in refs if c >= q.start))
    more = len(page) > q.limit
    page = page[: q.limit]
    return ChunkRefsResult(
        chunk_ids=tuple(page),
        refs=tuple(refs[chunk_id] for chunk_id in page),
        next=page[-1] + 1 if more and page else 0,
        sweep_horizon=state.chunks.sweep_horizon(),
        allocated=tuple(state.chunks.allocated_from(q.start)),
        next_chunk_id=state.chunks.next_chunk_id,
    )


def fetch_gc(state: NamespaceState, q: FetchGC) -> GCResult:
    queue = state.chunks.gc_queue
    return GCResult(tuple(itertools.islice(queue, max(q.limit, 0))))


def get_ring(state: NamespaceState, q: GetRing) -> RingResult:
    return RingResult(state.ring.ring())


_HANDLERS = {
    Lookup: lookup,
    GetAttr: get_attr,
    ReadDir: read_dir,
    Readlink: read_link,
    GetXattr: get_xattr,
    ListXattr: list_xattr,
    StatFs: stat_fs,
    Access: access,
    Open: open_file,
    GetBlockMap: get_block_map,
    ListChunkRefs: list_chunk_refs,
    FetchGC: fetch_gc,
    GetRing: get_ring,
}


def run(state: NamespaceState, q: Query) -> Result:
    handler = _HANDLERS[type(q)]
    result: Result = handler(state, q)  # type: ignore[operator]
    return result
