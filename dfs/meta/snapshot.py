"""The versioned snapshot format of the whole namespace state, and its reader.

Fixed-width little-endian records (struct) so 1M inodes encode and decode in seconds.
The bytes are canonical: maps whose order carries no meaning are written sorted, so two
replicas with the same state write identical snapshots. No I/O: bytes in, bytes out.
"""

from __future__ import annotations

import gc
import struct
from typing import Any

from dfs.meta.chunks import ChunkTable
from dfs.meta.inode import Directory, Inode
from dfs.meta.ringdata import RingData, Usage
from dfs.meta.state import NamespaceState
from dfs.meta.types import Kind, MemberState, RingMember, Slice

MAGIC = b"DFSNS"
VERSION = 1


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this version can read."""


_HEADER = struct.Struct("<5sH")
_STATE = struct.Struct("<QQqQ")  # block_size, next_ino, now, inode count
_INODE = struct.Struct("<QBHIIIQqqqB")  # ino kind mode uid gid nlink size a/m/ctime has_xattrs
_DIR = struct.Struct("<QQI")  # parent, next_cookie, entries
_ENTRY = struct.Struct("<QQH")  # cookie, ino, name length
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_BLOCK = struct.Struct("<QI")  # block, slices
_SLICE = struct.Struct("<IIQIQ")  # offset, length, chunk id, offset in chunk, epoch
_PAIR = struct.Struct("<QQ")
_TRIPLE = struct.Struct("<QQQ")
_MEMBER = struct.Struct("<IIBQQB")  # id, weight, state, capacity, used, has usage


def _put_blob(parts: list[bytes], blob: bytes) -> None:
    parts.append(_U32.pack(len(blob)))
    parts.append(blob)


def encode(state: NamespaceState) -> bytes:
    """The whole state in one go."""
    return SnapshotWriter(state).finish()


class SnapshotWriter:
    """A snapshot of the state as it was when the writer was made, written in steps
    while commands go on changing the state, so taking one never stalls the log.

    Copy on write: an inode about to change is encoded first, through the state's
    before_change hook; inodes made after the start are not part of it; the tables
    that are not inodes are copied at the start (a few C-level dict copies).
    """

    def __init__(self, state: NamespaceState) -> None:
        if state.before_change is not None:
            raise RuntimeError("a snapshot is already being written")
        self._state = state
        self._order = list(state.inodes)
        self._first_new_ino = state.next_ino
        self._images: dict[int, bytes] = {}
        self._position = 0
        self._head = _HEADER.pack(MAGIC, VERSION) + _STATE.pack(
            state.block_size, state.next_ino, state.now, len(self._order)
        )
        self._chunks = _copy_chunks(state.chunks)
        self._ring = _copy_ring(state.ring)
        self._orphans = dict(state.orphans)
        self._open_reports = dict(state.open_reports)
        state.before_change = self._save

    def _save(self, inode: Inode) -> None:
        if inode.ino < self._first_new_ino and inode.ino not in self._images:
            self._images[inode.ino] = _inode_image(inode)

    def step(self, max_inodes: int) -> bool:
        """Encodes up to max_inodes more inodes; True once every inode is encoded."""
        order, images, inodes = self._order, self._images, self._state.inodes
        end = min(self._position + max_inodes, len(order))
        for ino in order[self._position : end]:
            if ino not in images:
                images[ino] = _inode_image(inodes[ino])
        self._position = end
        if end < len(order):
            return False
        self.abort()  # every image is taken: nothing live is read from here on
        return True

    def finish(self) -> bytes:
        """Encodes what is left and returns the snapshot. After step() returned True
        this reads no live state, so it may run off the thread that applies commands."""
        self.step(len(self._order))
        parts = [self._head]
        parts.extend(self._images[ino] for ino in self._order)
        _encode_chunks(parts, self._chunks)
        _encode_ring(parts, self._ring)
        parts.append(_U64.pack(len(self._orphans)))
        parts.extend(_PAIR.pack(ino, self._orphans[ino]) for ino in sorted(self._orphans))
        parts.append(_U64.pack(len(self._open_reports)))
        for session in sorted(self._open_reports):
            inodes = self._open_reports[session]
            parts.append(_PAIR.pack(session, len(inodes)))
            parts.extend(_U64.pack(ino) for ino in inodes)
        return b"".join(parts)

    def abort(self) -> None:
        """Stops following changes (finish does this too)."""
        if self._state.before_change == self._save:
            self._state.before_change = None


def _copy_chunks(chunks: ChunkTable) -> ChunkTable:
    copy = ChunkTable()
    copy.next_chunk_id = chunks.next_chunk_id
    copy.refs = dict(chunks.refs)
    copy.gc_queue = dict(chunks.gc_queue)
    copy.ranges = {session: list(ranges) for session, ranges in chunks.ranges.items()}
    return copy


def _copy_ring(ring: RingData) -> RingData:
    copy = RingData()
    copy.epoch = ring.epoch
    copy.members = dict(ring.members)
    copy.replicas = ring.replicas
    copy.min_replicas = ring.min_replicas
    copy.vnodes_per_weight = ring.vnodes_per_weight
    copy.usage = dict(ring.usage)
    return copy


def _inode_image(inode: Inode) -> bytes:
    parts: list[bytes] = []
    _encode_inode(parts, inode)
    return b"".join(parts)


def _encode_inode(parts: list[bytes], inode: Inode) -> None:
    xattrs = inode.xattrs
    parts.append(
        _INODE.pack(
            inode.ino,
            inode.kind,
            inode.mode,
            inode.uid,
            inode.gid,
            inode.nlink,
            inode.size,
            inode.atime,
            inode.mtime,
            inode.ctime,
            1 if xattrs else 0,
        )
    )
    kind = inode.kind
    payload = inode.payload
    if kind == Kind.DIRECTORY:
        assert isinstance(payload, Directory)
        parts.append(_DIR.pack(payload.parent, payload.next_cookie, len(payload.entries)))
        for name, ino, cookie in payload.iter_from(0):
            parts.append(_ENTRY.pack(cookie, ino, len(name)))
            parts.append(name)
    elif kind == Kind.SYMLINK:
        assert isinstance(payload, bytes)
        _put_blob(parts, payload)
    elif kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE):
        parts.append(_U64.pack(inode.rdev))
    elif kind == Kind.REGULAR:
        block_map = inode.block_map() or {}
        parts.append(_U32.pack(len(block_map)))
        for block in sorted(block_map):
            slices = block_map[block]
            parts.append(_BLOCK.pack(block, len(slices)))
            parts.extend(
                _SLICE.pack(s.offset, s.length, s.chunk_id, s.offset_in_chunk, s.epoch)
                for s in slices
            )
    if xattrs:
        parts.append(_U32.pack(len(xattrs)))
        for name in sorted(xattrs):
            _put_blob(parts, name)
            _put_blob(parts, xattrs[name])


def _encode_chunks(parts: list[bytes], chunks: ChunkTable) -> None:
    parts.append(_U64.pack(chunks.next_chunk_id))
    parts.append(_U64.pack(len(chunks.refs)))
    parts.extend(_PAIR.pack(chunk_id, chunks.refs[chunk_id]) for chunk_id in sorted(chunks.refs))
    parts.append(_U64.pack(len(chunks.gc_queue)))
    parts.extend(_U64.pack(chunk_id) for chunk_id in chunks.gc_queue)
    parts.append(_U64.pack(len(chunks.ranges)))
    for session in sorted(chunks.ranges):
        ranges = chunks.ranges[session]
        parts.append(_PAIR.pack(session, len(ranges)))
        parts.extend(_PAIR.pack(first, count) for first, count in ranges)


def _encode_ring(parts: list[bytes], ring: RingData) -> None:
    parts.append(
        _TRIPLE.pack(ring.epoch, ring.replicas << 32 | ring.min_replicas, ring.vnodes_per_weight)
    )
    parts.append(_U32.pack(len(ring.members)))
    for member_id in sorted(ring.members):
        member = ring.members[member_id]
        usage = ring.usage.get(member_id)
        parts.append(
            _MEMBER.pack(
                member.id,
                member.weight,
                member.state,
                usage.capacity if usage else 0,
                usage.used if usage else 0,
                1 if usage else 0,
            )
        )
        _put_blob(parts, member.addr.encode())
        _put_blob(parts, member.domain.encode())


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, layout: struct.Struct) -> tuple[Any, ...]:
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def u64(self) -> int:
        value: int = self.take(_U64)[0]
        return value

    def u32(self) -> int:
        value: int = self.take(_U32)[0]
        return value

    def raw(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise SnapshotError("truncated snapshot")
        blob = self.data[self.pos : end]
        self.pos = end
        return blob

    def blob(self) -> bytes:
        return self.raw(self.u32())


def decode(data: bytes) -> NamespaceState:
    # Decoding builds millions of objects and no cycles; the cyclic collector would
    # rescan all of them again and again (a third of the time at 1M inodes).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _decode(_Reader(bytes(data)))
    except (struct.error, ValueError, KeyError) as error:
        if isinstance(error, SnapshotError):
            raise
        raise SnapshotError(f"corrupt snapshot: {error}") from error
    finally:
        if collecting:
            gc.enable()


def _decode(reader: _Reader) -> NamespaceState:
    magic, version = reader.take(_HEADER)
    if magic != MAGIC:
        raise SnapshotError("not a namespace snapshot")
    if version != VERSION:
        raise SnapshotError(f"snapshot version {version}, this build reads {VERSION}")
    block_size, next_ino, now, inode_count = reader.take(_STATE)
    state = NamespaceState(block_size, now)
    state.next_ino = next_ino
    inodes: dict[int, Inode] = {}
    for _ in range(inode_count):
        inode = _decode_inode(reader)
        inodes[inode.ino] = inode
    state.inodes = inodes
    _decode_chunks(reader, state.chunks)
    _decode_ring(reader, state.ring)
    for _ in range(reader.u64()):
        ino, orphaned_at = reader.take(_PAIR)
        state.orphans[ino] = orphaned_at
    for _ in range(reader.u64()):
        session, count = reader.take(_PAIR)
        state.open_reports[session] = tuple(reader.u64() for _ in range(count))
    if reader.pos != len(reader.data):
        raise SnapshotError("trailing bytes after snapshot")
    return state


def _decode_inode(reader: _Reader) -> Inode:
    ino, kind_value, mode, uid, gid, nlink, size, atime, mtime, ctime, has_xattrs = reader.take(
        _INODE
    )
    kind = Kind(kind_value)
    inode = Inode(ino, kind, mode, uid, gid, nlink, 0, None)
    inode.size = size
    inode.atime, inode.mtime, inode.ctime = atime, mtime, ctime
    if kind == Kind.DIRECTORY:
        parent, next_cookie, count = reader.take(_DIR)
        directory = Directory(parent)
        for _ in range(count):
            cookie, child, name_length = reader.take(_ENTRY)
            directory.restore_entry(reader.raw(name_length), child, cookie)
        directory.next_cookie = next_cookie
        inode.payload = directory
    elif kind == Kind.SYMLINK:
        inode.payload = reader.blob()
    elif kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE):
        inode.payload = reader.u64()
    elif kind == Kind.REGULAR:
        block_count = reader.u32()
        if block_count:
            block_map: dict[int, list[Slice]] = {}
            for _ in range(block_count):
                block, slice_count = reader.take(_BLOCK)
                block_map[block] = [Slice(*reader.take(_SLICE)) for _ in range(slice_count)]
            inode.payload = block_map
    if has_xattrs:
        xattrs: dict[bytes, bytes] = {}
        for _ in range(reader.u32()):
            name = reader.blob()
            xattrs[name] = reader.blob()
        inode.xattrs = xattrs
    return inode


def _decode_chunks(reader: _Reader, chunks: ChunkTable) -> None:
    chunks.next_chunk_id = reader.u64()
    for _ in range(reader.u64()):
        chunk_id, refs = reader.take(_PAIR)
        chunks.refs[chunk_id] = refs
    for _ in range(reader.u64()):
        chunks.gc_queue[reader.u64()] = None
    for _ in range(reader.u64()):
        session, count = reader.take(_PAIR)
        chunks.ranges[session] = [
            (first, n) for first, n in (reader.take(_PAIR) for _ in range(count))
        ]


def _decode_ring(reader: _Reader, ring: RingData) -> None:
    ring.epoch, replication, ring.vnodes_per_weight = reader.take(_TRIPLE)
    ring.replicas, ring.min_replicas = replication >> 32, replication & 0xFFFFFFFF
    for _ in range(reader.u32()):
        member_id, weight, state, capacity, used, has_usage = reader.take(_MEMBER)
        addr = reader.blob().decode()
        domain = reader.blob().decode()
        ring.members[member_id] = RingMember(member_id, addr, weight, domain, MemberState(state))
        if has_usage:
            ring.usage[member_id] = Usage(capacity, used)
