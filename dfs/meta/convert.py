"""Field-by-field translation between meta.proto messages and the namespace's
operation and result records. Decides nothing; validation lives in the service."""

from __future__ import annotations

from dfs.meta import ops
from dfs.meta.results import AttrResult, DirEntry, ReadDirResult, StatFsResult
from dfs.meta.types import Attr, BlockMap, Caller, Kind, Ring, Slice, TimeSet
from dfs.rpc import common_pb2, meta_pb2


def _file_kind(kind: Kind) -> common_pb2.FileKind.ValueType:
    return common_pb2.FileKind.ValueType(int(kind))


def caller_from_pb(pb: common_pb2.Caller) -> Caller:
    return Caller(pb.uid, pb.gid, tuple(sorted(set(pb.groups))))


def attr_to_pb(attr: Attr) -> common_pb2.Attr:
    return common_pb2.Attr(
        ino=attr.ino,
        kind=_file_kind(attr.kind),
        mode=attr.mode,
        uid=attr.uid,
        gid=attr.gid,
        nlink=attr.nlink,
        size=attr.size,
        atime_ns=attr.atime_ns,
        mtime_ns=attr.mtime_ns,
        ctime_ns=attr.ctime_ns,
        rdev=attr.rdev,
        generation=attr.generation,
        blksize=attr.blksize,
    )


def attr_from_pb(pb: common_pb2.Attr) -> Attr:
    return Attr(
        pb.ino,
        Kind(pb.kind),
        pb.mode,
        pb.uid,
        pb.gid,
        pb.nlink,
        pb.size,
        pb.atime_ns,
        pb.mtime_ns,
        pb.ctime_ns,
        pb.rdev,
        pb.generation,
        pb.blksize,
    )


def attr_reply(result: AttrResult) -> meta_pb2.AttrReply:
    if result.errno or result.attr is None:
        return meta_pb2.AttrReply(errno=result.errno)
    return meta_pb2.AttrReply(attr=attr_to_pb(result.attr))


def slice_to_pb(piece: Slice) -> common_pb2.Slice:
    return common_pb2.Slice(
        offset=piece.offset,
        length=piece.length,
        chunk_id=piece.chunk_id,
        offset_in_chunk=piece.offset_in_chunk,
        epoch=piece.epoch,
    )


def slice_from_pb(pb: common_pb2.Slice) -> Slice:
    return Slice(pb.offset, pb.length, pb.chunk_id, pb.offset_in_chunk, pb.epoch)


def block_map_to_pb(block_map: BlockMap) -> common_pb2.BlockMap:
    return common_pb2.BlockMap(
        block=block_map.block, slices=[slice_to_pb(s) for s in block_map.slices]
    )


def block_map_from_pb(pb: common_pb2.BlockMap) -> BlockMap:
    return BlockMap(pb.block, tuple(slice_from_pb(s) for s in pb.slices))


def ring_to_pb(ring: Ring) -> common_pb2.Ring:
    return common_pb2.Ring(
        epoch=ring.epoch,
        replicas=ring.replicas,
        min_replicas=ring.min_replicas,
        vnodes_per_weight=ring.vnodes_per_weight,
        members=[
            common_pb2.RingMember(
                id=m.id,
                addr=m.addr,
                weight=m.weight,
                domain=m.domain,
                state=common_pb2.MemberState.ValueType(int(m.state)),
            )
            for m in ring.members
        ],
    )


def dir_entry_to_pb(entry: DirEntry) -> meta_pb2.DirEntry:
    pb = meta_pb2.DirEntry(
        name=entry.name,
        ino=entry.ino,
        kind=_file_kind(entry.kind),
        cookie=entry.cookie,
    )
    if entry.attr is not None:
        pb.attr.CopyFrom(attr_to_pb(entry.attr))
    return pb


def read_dir_reply(result: ReadDirResult) -> meta_pb2.ReadDirReply:
    return meta_pb2.ReadDirReply(
        errno=result.errno, eof=result.eof, entries=[dir_entry_to_pb(e) for e in result.entries]
    )


def statfs_reply(result: StatFsResult) -> meta_pb2.StatFsReply:
    return meta_pb2.StatFsReply(
        errno=result.errno,
        bsize=result.bsize,
        blocks=result.blocks,
        bfree=result.bfree,
        bavail=result.bavail,
        files=result.files,
        ffree=result.ffree,
        namemax=result.namemax,
    )


def set_attr_from_pb(pb: meta_pb2.SetAttrRequest) -> ops.SetAttr:
    return ops.SetAttr(
        caller=caller_from_pb(pb.caller),
        ino=pb.ino,
        mode=pb.mode if pb.HasField("mode") else None,
        uid=pb.uid if pb.HasField("uid") else None,
        gid=pb.gid if pb.HasField("gid") else None,
        size=pb.size if pb.HasField("size") else None,
        atime_set=TimeSet(pb.atime_set),
        atime_ns=pb.atime_ns,
        mtime_set=TimeSet(pb.mtime_set),
        mtime_ns=pb.mtime_ns,
    )


def make_node_from_pb(pb: meta_pb2.MakeNodeRequest) -> ops.MakeNode:
    return ops.MakeNode(
        caller=caller_from_pb(pb.caller),
        parent=pb.parent,
        name=pb.name,
        kind=Kind(pb.kind),
        mode=pb.mode,
        rdev=pb.rdev,
        target=pb.target,
        exclusive=pb.exclusive,
    )


def commit_from_pb(pb: meta_pb2.CommitRequest) -> ops.Commit:
    updates = tuple(
        ops.BlockUpdate(
            u.block, tuple(slice_from_pb(s) for s in u.slices), u.replace, u.replaces_count,
            u.replaces_last_chunk,
        )
        for u in pb.updates
    )
    return ops.Commit(caller=caller_from_pb(pb.caller), ino=pb.ino, updates=updates, end=pb.end)
