"""The namespace client: every metadata operation as an async method that returns
protobuf answers and raises OSError(errno) for file-system errors.

Mutations carry the session's next sequence number and keep it on every retry
(exactly once across leader changes); many may be in flight at once. The
session's keepalives report the inodes this client holds open, so files
unlinked elsewhere keep their data while open here.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import grpc.aio

from dfs.auth import ClusterSecret
from dfs.client.retry import DEFAULT_POLICY, LeaderChannels, RetryPolicy
from dfs.client.session import ClientSession, SessionGrant
from dfs.rpc import common_pb2, meta_pb2, meta_pb2_grpc

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def check(reply: Any, what: str) -> Any:
    if reply.errno:
        raise OSError(reply.errno, f"{what}: {os.strerror(reply.errno)}")
    return reply


def attr_of(reply: Any, what: str) -> common_pb2.Attr:
    attr: common_pb2.Attr = check(reply, what).attr
    return attr


class MetaClient:
    def __init__(
        self,
        addrs: Iterable[str],
        secret: ClusterSecret | None,
        policy: RetryPolicy = DEFAULT_POLICY,
        client_name: str = "dfs",
    ) -> None:
        self.channels = LeaderChannels(addrs, secret, policy)
        self.client_name = client_name
        self.session = ClientSession(self._open_session, self._keepalive)
        self._held: Counter[int] = Counter()

    # ---- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        await self.session.open()

    async def close(self) -> None:
        session = self.session.session
        await self.session.close()
        if session:
            # Closing is a courtesy: expiry does the same later.
            with contextlib.suppress(Exception):
                await self._call("CloseSession", meta_pb2.CloseSessionRequest(session=session))
        await self.channels.close()

    def hold(self, ino: int) -> None:
        """This client has `ino` open (reported with keepalives)."""
        self._held[ino] += 1

    def release(self, ino: int) -> None:
        self._held[ino] -= 1
        if self._held[ino] <= 0:
            del self._held[ino]

    @property
    def open_inodes(self) -> list[int]:
        return sorted(self._held)

    # ---- plumbing --------------------------------------------------------------

    async def _call(self, method: str, request: Any) -> Any:
        async def attempt(channel: grpc.aio.Channel, timeout: float) -> Any:
            return await getattr(meta_pb2_grpc.MetaStub(channel), method)(request, timeout=timeout)

        return await self.channels.call(attempt)

    async def _mutate(self, method: str, request: Any) -> Any:
        session, sequence, acked = self.session.next_request()
        request.request.CopyFrom(
            common_pb2.RequestId(session=session, sequence=sequence, acked=acked)
        )
        reply = await self._call(method, request)  # retries resend the same sequence
        self.session.answered(session, sequence)
        if reply.errno == errno.ESTALE:
            await self.session.reopen(session)
        return reply

    async def _open_session(self) -> SessionGrant:
        request = meta_pb2.OpenSessionRequest(client=f"{self.client_name}@{os.uname().nodename}")
        reply = check(await self._call("OpenSession", request), "open session")
        return SessionGrant(reply.session, reply.timeout_ms)

    async def _keepalive(self, session: int, acked: int) -> int:
        request = meta_pb2.KeepAliveRequest(
            session=session, acked=acked, open_inodes=self.open_inodes
        )
        reply = await self._call("KeepAlive", request)
        return int(reply.errno)

    # ---- reads -------------------------------------------------------------------

    async def lookup(self, caller: common_pb2.Caller, parent: int, name: bytes) -> common_pb2.Attr:
        request = meta_pb2.LookupRequest(caller=caller, parent=parent, name=name)
        return attr_of(await self._call("Lookup", request), "lookup")

    async def getattr(self, caller: common_pb2.Caller, ino: int) -> common_pb2.Attr:
        request = meta_pb2.GetAttrRequest(caller=caller, ino=ino)
        return attr_of(await self._call("GetAttr", request), "getattr")

    async def readlink(self, caller: common_pb2.Caller, ino: int) -> bytes:
        request = meta_pb2.ReadlinkRequest(caller=caller, ino=ino)
        return bytes(check(await self._call("Readlink", request), "readlink").target)

    async def readdir(
        self,
        caller: common_pb2.Caller,
        ino: int,
        cookie: int = 0,
        limit: int = 1024,
        with_attrs: bool = False,
    ) -> meta_pb2.ReadDirReply:
        request = meta_pb2.ReadDirRequest(
            caller=caller, ino=ino, cookie=cookie, limit=limit, with_attrs=with_attrs
        )
        reply: meta_pb2.ReadDirReply = check(await self._call("ReadDir", request), "readdir")
        return reply

    async def statfs(self, caller: common_pb2.Caller) -> meta_pb2.StatFsReply:
        reply: meta_pb2.StatFsReply = check(
            await self._call("StatFs", meta_pb2.StatFsRequest(caller=caller)), "statfs"
        )
        return reply

    async def getxattr(self, caller: common_pb2.Caller, ino: int, name: bytes) -> bytes:
        request = meta_pb2.GetXattrRequest(caller=caller, ino=ino, name=name)
        return bytes(check(await self._call("GetXattr", request), "getxattr").value)

    async def listxattr(self, caller: common_pb2.Caller, ino: int) -> list[bytes]:
        request = meta_pb2.ListXattrRequest(caller=caller, ino=ino)
        return list(check(await self._call("ListXattr", request), "listxattr").names)

    async def access(self, caller: common_pb2.Caller, ino: int, mask: int) -> None:
        request = meta_pb2.AccessRequest(caller=caller, ino=ino, mask=mask)
        check(await self._call("Access", request), "access")

    async def open_file(
        self, caller: common_pb2.Caller, ino: int, flags: int, with_block_maps: bool = False
    ) -> meta_pb2.OpenReply:
        request = meta_pb2.OpenRequest(
            caller=caller,
            ino=ino,
            flags=flags,
            session=self.session.session,
            with_block_maps=with_block_maps,
        )
        reply: meta_pb2.OpenReply = check(await self._call("Open", request), "open")
        return reply

    async def block_maps(
        self, caller: common_pb2.Caller, ino: int, first_block: int = 0, count: int = 0
    ) -> meta_pb2.GetBlockMapReply:
        request = meta_pb2.GetBlockMapRequest(
            caller=caller, ino=ino, first_block=first_block, count=count
        )
        reply: meta_pb2.GetBlockMapReply = check(
            await self._call("GetBlockMap", request), "block map"
        )
        return reply

    async def get_block_map(
        self, caller: common_pb2.Caller, ino: int, first_block: int, count: int
    ) -> tuple[list[common_pb2.BlockMap], int]:
        """(block maps with slices, file size): the shape chunk I/O expects."""
        reply = await self.block_maps(caller, ino, first_block, count)
        return list(reply.blocks), int(reply.size)

    async def get_ring(self, known_epoch: int = 0) -> common_pb2.Ring:
        return await self.ring(known_epoch)

    async def ring(self, known_epoch: int = 0) -> common_pb2.Ring:
        ring: common_pb2.Ring = await self._call(
            "GetRing", meta_pb2.GetRingRequest(known_epoch=known_epoch)
        )
        return ring

    # ---- mutations ---------------------------------------------------------------

    async def make_node(
        self,
        caller: common_pb2.Caller,
        parent: int,
        name: bytes,
        kind: int,
        mode: int,
        rdev: int = 0,
        target: bytes = b"",
        exclusive: bool = True,
    ) -> common_pb2.Attr:
        request = meta_pb2.MakeNodeRequest(
            caller=caller,
            parent=parent,
            name=name,
            kind=common_pb2.FileKind.ValueType(kind),
            mode=mode,
            rdev=rdev,
            target=target,
            exclusive=exclusive,
        )
        return attr_of(await self._mutate("MakeNode", request), "create")

    async def mkdir(
        self, caller: common_pb2.Caller, parent: int, name: bytes, mode: int
    ) -> common_pb2.Attr:
        return await self.make_node(caller, parent, name, common_pb2.FILE_KIND_DIRECTORY, mode)

    async def create(
        self, caller: common_pb2.Caller, parent: int, name: bytes, mode: int, exclusive: bool = True
    ) -> common_pb2.Attr:
        return await self.make_node(
            caller, parent, name, common_pb2.FILE_KIND_REGULAR, mode, exclusive=exclusive
        )

    async def symlink(
        self, caller: common_pb2.Caller, parent: int, name: bytes, target: bytes
    ) -> common_pb2.Attr:
        return await self.make_node(
            caller, parent, name, common_pb2.FILE_KIND_SYMLINK, 0o777, target=target
        )

    async def unlink(self, caller: common_pb2.Caller, parent: int, name: bytes) -> None:
        request = meta_pb2.RemoveRequest(caller=caller, parent=parent, name=name)
        check(await self._mutate("Remove", request), "unlink")

    async def rmdir(self, caller: common_pb2.Caller, parent: int, name: bytes) -> None:
        request = meta_pb2.RemoveRequest(caller=caller, parent=parent, name=name, directory=True)
        check(await self._mutate("Remove", request), "rmdir")

    async def rename(
        self,
        caller: common_pb2.Caller,
        parent: int,
        name: bytes,
        new_parent: int,
        new_name: bytes,
        flags: int = 0,
    ) -> None:
        request = meta_pb2.RenameRequest(
            caller=caller,
            parent=parent,
            name=name,
            new_parent=new_parent,
            new_name=new_name,
            flags=flags,
        )
        check(await self._mutate("Rename", request), "rename")

    async def link(
        self, caller: common_pb2.Caller, ino: int, new_parent: int, new_name: bytes
    ) -> common_pb2.Attr:
        request = meta_pb2.LinkRequest(
            caller=caller, ino=ino, new_parent=new_parent, new_name=new_name
        )
        return attr_of(await self._mutate("Link", request), "link")

    async def setattr(self, request: meta_pb2.SetAttrRequest) -> common_pb2.Attr:
        return attr_of(await self._mutate("SetAttr", request), "setattr")

    async def setxattr(
        self, caller: common_pb2.Caller, ino: int, name: bytes, value: bytes, flags: int = 0
    ) -> None:
        request = meta_pb2.SetXattrRequest(
            caller=caller, ino=ino, name=name, value=value, flags=flags
        )
        check(await self._mutate("SetXattr", request), "setxattr")

    async def removexattr(self, caller: common_pb2.Caller, ino: int, name: bytes) -> None:
        request = meta_pb2.RemoveXattrRequest(caller=caller, ino=ino, name=name)
        check(await self._mutate("RemoveXattr", request), "removexattr")

    async def alloc_chunk_ids(self, count: int) -> tuple[int, int]:
        """(first id, count) allocated to this session."""
        reply = check(
            await self._mutate("AllocChunkIds", meta_pb2.AllocChunkIdsRequest(count=count)),
            "allocate chunk ids",
        )
        return int(reply.first), int(reply.count)

    async def commit(
        self, caller: common_pb2.Caller, ino: int, updates: Sequence[meta_pb2.BlockUpdate], end: int
    ) -> common_pb2.Attr:
        request = meta_pb2.CommitRequest(caller=caller, ino=ino, updates=updates, end=end)
        return attr_of(await self._mutate("Commit", request), "commit")
