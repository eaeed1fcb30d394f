"""MetaService: the namespace as a gRPC service on every metadata replica.

Translates requests into namespace operations (dfs/meta/convert.py), sends
mutations through the log as exactly-once session commands, answers reads
linearizably, and reports file-system errors as errno values in the replies.
Malformed requests get INVALID_ARGUMENT; followers redirect to the leader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from dfs.meta import convert, ops
from dfs.meta.duties import LeaderDuties
from dfs.meta.proposer import Proposer, invalid
from dfs.meta.replicated import MetaStateMachine
from dfs.meta.results import (
    AllocResult,
    AttrResult,
    BlockMapResult,
    ErrnoResult,
    ListXattrResult,
    OpenResult,
    ReadDirResult,
    ReadlinkResult,
    Result,
    RingResult,
    StatFsResult,
    XattrResult,
)
from dfs.meta.types import Kind
from dfs.paxos import sessions
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc

MAX_SESSION_TIMEOUT_MS = 10 * 60 * 1000
READDIR_PAGE_MAX = 4096
RING_WATCH_POLL_S = 0.1
# Block maps sent with an open: a file of up to this many blocks with slices (4 GiB
# at 4 MiB blocks) in one reply of a few hundred KB at most; bigger files page them.
OPEN_BLOCK_MAPS_MAX = 1024


def block_map_reply(result: BlockMapResult) -> meta_pb2.GetBlockMapReply:
    return meta_pb2.GetBlockMapReply(
        errno=result.errno,
        size=result.size,
        blocks=[convert.block_map_to_pb(b) for b in result.blocks],
    )


def _attr_reply(result: Result) -> meta_pb2.AttrReply:
    assert isinstance(result, AttrResult | ErrnoResult)
    if isinstance(result, ErrnoResult):
        return meta_pb2.AttrReply(errno=result.errno)
    return convert.attr_reply(result)


def _errno_reply(result: Result) -> meta_pb2.ErrnoReply:
    return meta_pb2.ErrnoReply(errno=int(getattr(result, "errno", 0)))


class MetaService(meta_pb2_grpc.MetaServicer):
    def __init__(self, proposer: Proposer, state: MetaStateMachine, duties: LeaderDuties):
        self.proposer = proposer
        self.state = state
        self.duties = duties

    async def _caller(self, request: Any, context: Any) -> None:
        if not request.HasField("caller"):
            await invalid(context, "caller is required (uid, gid, groups)")

    # ---- sessions --------------------------------------------------------------

    async def OpenSession(
        self, request: meta_pb2.OpenSessionRequest, context: Any
    ) -> meta_pb2.OpenSessionReply:
        outcome = await self.proposer.session(context, sessions.OpenSession(time.time_ns()))
        if outcome.status:
            return meta_pb2.OpenSessionReply(errno=outcome.status)
        session = int.from_bytes(outcome.payload, "big")
        self.duties.session_opened(session, request.client)
        return meta_pb2.OpenSessionReply(
            session=session, timeout_ms=self.state.sessions.timeout_ns // 1_000_000
        )

    async def KeepAlive(
        self, request: meta_pb2.KeepAliveRequest, context: Any
    ) -> meta_pb2.KeepAliveReply:
        outcome = await self.proposer.session(
            context, sessions.KeepAlive(request.session, time.time_ns())
        )
        if outcome.status:
            return meta_pb2.KeepAliveReply(errno=outcome.status)
        open_inodes = tuple(sorted(set(request.open_inodes)))
        if self.duties.open_set_changed(request.session, open_inodes):
            await self.proposer.system_op(context, ops.SetOpenInodes(request.session, open_inodes))
            self.duties.open_set_recorded(request.session, open_inodes)
        return meta_pb2.KeepAliveReply()

    async def CloseSession(
        self, request: meta_pb2.CloseSessionRequest, context: Any
    ) -> meta_pb2.ErrnoReply:
        outcome = await self.proposer.session(
            context, sessions.CloseSession(request.session, time.time_ns())
        )
        return meta_pb2.ErrnoReply(errno=outcome.status)

    # ---- reads -------------------------------------------------------------------

    async def Lookup(self, request: meta_pb2.LookupRequest, context: Any) -> meta_pb2.AttrReply:
        await self._caller(request, context)
        query = ops.Lookup(convert.caller_from_pb(request.caller), request.parent, request.name)
        return _attr_reply(await self.proposer.query(context, query))

    async def GetAttr(self, request: meta_pb2.GetAttrRequest, context: Any) -> meta_pb2.AttrReply:
        await self._caller(request, context)
        query = ops.GetAttr(convert.caller_from_pb(request.caller), request.ino)
        return _attr_reply(await self.proposer.query(context, query))

    async def Readlink(
        self, request: meta_pb2.ReadlinkRequest, context: Any
    ) -> meta_pb2.ReadlinkReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context, ops.Readlink(convert.caller_from_pb(request.caller), request.ino)
        )
        assert isinstance(result, ReadlinkResult)
        return meta_pb2.ReadlinkReply(errno=result.errno, target=result.target)

    async def ReadDir(
        self, request: meta_pb2.ReadDirRequest, context: Any
    ) -> meta_pb2.ReadDirReply:
        await self._caller(request, context)
        limit = min(request.limit or READDIR_PAGE_MAX, READDIR_PAGE_MAX)
        result = await self.proposer.query(
            context,
            ops.ReadDir(
                convert.caller_from_pb(request.caller),
                request.ino,
                request.cookie,
                limit,
                request.with_attrs,
            ),
        )
        assert isinstance(result, ReadDirResult)
        return convert.read_dir_reply(result)

    async def StatFs(self, request: meta_pb2.StatFsRequest, context: Any) -> meta_pb2.StatFsReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context, ops.StatFs(convert.caller_from_pb(request.caller))
        )
        assert isinstance(result, StatFsResult)
        return convert.statfs_reply(result)

    async def GetXattr(
        self, request: meta_pb2.GetXattrRequest, context: Any
    ) -> meta_pb2.XattrReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context, ops.GetXattr(convert.caller_from_pb(request.caller), request.ino, request.name)
        )
        assert isinstance(result, XattrResult)
        return meta_pb2.XattrReply(errno=result.errno, value=result.value)

    async def ListXattr(
        self, request: meta_pb2.ListXattrRequest, context: Any
    ) -> meta_pb2.ListXattrReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context, ops.ListXattr(convert.caller_from_pb(request.caller), request.ino)
        )
        assert isinstance(result, ListXattrResult)
        return meta_pb2.ListXattrReply(errno=result.errno, names=list(result.names))

    async def Access(self, request: meta_pb2.AccessRequest, context: Any) -> meta_pb2.ErrnoReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context, ops.Access(convert.caller_from_pb(request.caller), request.ino, request.mask)
        )
        return _errno_reply(result)

    async def Open(self, request: meta_pb2.OpenRequest, context: Any) -> meta_pb2.OpenReply:
        await self._caller(request, context)
        caller = convert.caller_from_pb(request.caller)
        queries: list[ops.Query] = [ops.Open(caller, request.ino, request.flags)]
        if request.with_block_maps:
            queries.append(ops.GetBlockMap(caller, request.ino))
        result, *maps = await self.proposer.query_together(context, queries)
        assert isinstance(result, OpenResult)
        if result.errno or result.attr is None:
            return meta_pb2.OpenReply(errno=result.errno)
        reply = meta_pb2.OpenReply(
            attr=convert.attr_to_pb(result.attr), block_size=result.block_size
        )
        blocks = maps[0] if maps else None
        if (
            isinstance(blocks, BlockMapResult)
            and not blocks.errno
            and len(blocks.blocks) <= OPEN_BLOCK_MAPS_MAX
        ):
            reply.block_maps.CopyFrom(block_map_reply(blocks))
        return reply

    async def GetBlockMap(
        self, request: meta_pb2.GetBlockMapRequest, context: Any
    ) -> meta_pb2.GetBlockMapReply:
        await self._caller(request, context)
        result = await self.proposer.query(
            context,
            ops.GetBlockMap(
                convert.caller_from_pb(request.caller),
                request.ino,
                request.first_block,
                request.count,
            ),
        )
        assert isinstance(result, BlockMapResult)
        return block_map_reply(result)

    async def GetRing(self, request: meta_pb2.GetRingRequest, context: Any) -> common_pb2.Ring:
        result = await self.proposer.query(context, ops.GetRing())
        assert isinstance(result, RingResult)
        return convert.ring_to_pb(result.ring)

    async def WatchRing(
        self, request: meta_pb2.GetRingRequest, context: Any
    ) -> AsyncIterator[common_pb2.Ring]:
        """The current ring, then every change, for as long as the caller listens."""
        known = request.known_epoch
        while True:
            result = await self.proposer.query(context, ops.GetRing())
            assert isinstance(result, RingResult)
            if result.ring.epoch > known or known == 0:
                known = max(result.ring.epoch, 1)
                yield convert.ring_to_pb(result.ring)
            await asyncio.sleep(RING_WATCH_POLL_S)

    # ---- mutations ---------------------------------------------------------------

    async def SetAttr(self, request: meta_pb2.SetAttrRequest, context: Any) -> meta_pb2.AttrReply:
        await self._caller(request, context)
        op = convert.set_attr_from_pb(request)
        return _attr_reply(await self.proposer.client_op(context, request.request, op))

    async def MakeNode(self, request: meta_pb2.MakeNodeRequest, context: Any) -> meta_pb2.AttrReply:
        await self._caller(request, context)
        if request.kind not in {k.value for k in Kind}:
            await invalid(context, f"kind {request.kind} is not a file kind")
        op = convert.make_node_from_pb(request)
        return _attr_reply(await self.proposer.client_op(context, request.request, op))

    async def Remove(self, request: meta_pb2.RemoveRequest, context: Any) -> meta_pb2.ErrnoReply:
        await self._caller(request, context)
        op = ops.Remove(
            convert.caller_from_pb(request.caller), request.parent, request.name, request.directory
        )
        return _errno_reply(await self.proposer.client_op(context, request.request, op))

    async def Rename(self, request: meta_pb2.RenameRequest, context: Any) -> meta_pb2.ErrnoReply:
        await self._caller(request, context)
        op = ops.Rename(
            convert.caller_from_pb(request.caller),
            request.parent,
            request.name,
            request.new_parent,
            request.new_name,
            request.flags,
        )
        return _errno_reply(await self.proposer.client_op(context, request.request, op))

    async def Link(self, request: meta_pb2.LinkRequest, context: Any) -> meta_pb2.AttrReply:
        await self._caller(request, context)
        op = ops.Link(
            convert.caller_from_pb(request.caller),
            request.ino,
            request.new_parent,
            request.new_name,
        )
        return _attr_reply(await self.proposer.client_op(context, request.request, op))

    async def SetXattr(
        self, request: meta_pb2.SetXattrRequest, context: Any
    ) -> meta_pb2.ErrnoReply:
        await self._caller(request, context)
        op = ops.SetXattr(
            convert.caller_from_pb(request.caller),
            request.ino,
            request.name,
            request.value,
            request.flags,
        )
        return _errno_reply(await self.proposer.client_op(context, request.request, op))

    async def RemoveXattr(
        self, request: meta_pb2.RemoveXattrRequest, context: Any
    ) -> meta_pb2.ErrnoReply:
        await self._caller(request, context)
        op = ops.RemoveXattr(convert.caller_from_pb(request.caller), request.ino, request.name)
        return _errno_reply(await self.proposer.client_op(context, request.request, op))

    async def AllocChunkIds(
        self, request: meta_pb2.AllocChunkIdsRequest, context: Any
    ) -> meta_pb2.AllocChunkIdsReply:
        result = await self.proposer.client_op(
            context, request.request, ops.AllocChunkIds(request.count)
        )
        if not isinstance(result, AllocResult):
            return meta_pb2.AllocChunkIdsReply(errno=int(getattr(result, "errno", 0)))
        return meta_pb2.AllocChunkIdsReply(
            errno=result.errno, first=result.first, count=result.count
        )

    async def Commit(self, request: meta_pb2.CommitRequest, context: Any) -> meta_pb2.CommitReply:
        await self._caller(request, context)
        op = convert.commit_from_pb(request)
        result = await self.proposer.client_op(context, request.request, op)
        reply = _attr_reply(result)
        return meta_pb2.CommitReply(errno=reply.errno, attr=reply.attr if not reply.errno else None)
