"""`dfs admin fsck` on the metadata leader: the namespace and the chunk placement
checked against each other, with progress streamed to the admin tool.

The namespace is checked on a fresh snapshot decoded off the event loop, so a
large namespace never stalls commits. The data servers' listings are compared
with the references counted in that image; before a chunk is reported missing,
under-replicated or orphaned, the live state is asked again, so a file deleted
or written since the snapshot is not reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from dfs.channels import DataStubPool
from dfs.meta import fsck
from dfs.meta.fsckops import FsckRepair
from dfs.meta.proposer import Proposer
from dfs.meta.replicated import MetaStateMachine
from dfs.meta.results import RepairResult
from dfs.meta.state import NamespaceState
from dfs.meta.types import ROOT_INO, Kind
from dfs.paxos import snapshot as snapshot_files
from dfs.paxos.node import SNAPSHOT_DIR, PaxosNode
from dfs.rpc import admin_pb2, data_pb2

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 300.0
LIST_PAGE = 1000
VERIFY_BATCH = 64


class FsckError(Exception):
    """fsck cannot run: the message says why (sent as FAILED_PRECONDITION)."""


@dataclass
class ChunkCensus:
    """Who holds which chunk, as the data servers listed them."""

    holders: dict[int, list[int]] = field(default_factory=dict)  # chunk -> server ids
    lengths: dict[int, int] = field(default_factory=dict)
    corrupt: dict[int, list[int]] = field(default_factory=dict)  # chunk -> server ids
    unreachable: list[int] = field(default_factory=list)


def _progress(phase: str, done: int, total: int = 0) -> admin_pb2.FsckUpdate:
    return admin_pb2.FsckUpdate(progress=admin_pb2.FsckProgress(phase=phase, done=done,
                                                                total=total))


def _finding(problem: str, ident: int, detail: str, repairable: bool,
             repaired: bool = False) -> admin_pb2.FsckFinding:
    return admin_pb2.FsckFinding(problem=problem, id=ident, detail=detail,
                                 repairable=repairable, repaired=repaired)


def _newest_snapshot(directory: Path) -> snapshot_files.Snapshot:
    # Not snapshot_files.latest: that removes *.tmp files, one of which may be the
    # snapshot the node is writing right now.
    for _attempt in range(5):
        paths = sorted(directory.glob("*" + snapshot_files.SUFFIX))
        if not paths:
            break
        try:
            return snapshot_files.decode(paths[-1].read_bytes(), str(paths[-1]))
        except FileNotFoundError:
            continue  # trimmed under us by a newer snapshot: take that one
    raise FsckError(f"no snapshot in {directory}")


def _namespace_of(payload: bytes, timeout_ns: int) -> NamespaceState:
    machine = MetaStateMachine(session_timeout_ns=timeout_ns)
    machine.restore(payload)
    return machine.namespace.state


def _resolve(state: NamespaceState, path: str) -> int:
    ino = ROOT_INO
    for part in filter(None, path.split("/")):
        inode = state.inodes[ino]
        if inode.kind != Kind.DIRECTORY:
            raise FsckError(f"{path}: {part!r} is under a non-directory")
        child = inode.directory.get(part.encode())
        if child is None:
            raise FsckError(f"{path}: no such file or directory")
        ino = child
    return ino


def _within(repair: FsckRepair, scope: set[int]) -> FsckRepair:
    """The fixes of `repair` that concern inodes in `scope` (chunk counts are global)."""
    return FsckRepair(
        tuple(fix for fix in repair.nlinks if fix.ino in scope),
        tuple(fix for fix in repair.dangling if fix.parent in scope),
        tuple(fix for fix in repair.parents if fix.ino in scope),
        repair.chunk_refs,
    )


class FsckRunner:
    def __init__(self, node: PaxosNode, proposer: Proposer) -> None:
        self.node = node
        self.proposer = proposer

    async def run(self, request: admin_pb2.FsckRequest, context: Any
                  ) -> AsyncIterator[admin_pb2.FsckUpdate]:
        started = time.monotonic()
        yield _progress("snapshot", 0, 1)
        snap = await self._fresh_snapshot()
        yield _progress("snapshot", 1, 1)
        yield _progress("namespace", 0, 1)
        timeout_ns = self.proposer.state.sessions.timeout_ns
        image = await asyncio.to_thread(_namespace_of, snap.payload, timeout_ns)
        report = await asyncio.to_thread(fsck.check, image)
        scope = None
        if request.path.strip("/"):
            scope = report.subtree(_resolve(image, request.path))
            report.repair = _within(report.repair, scope)
        del image  # the report keeps what is needed; the image can be large
        yield _progress("namespace", 1, 1)
        census = ChunkCensus()
        # One set of channels to the data servers for the whole run: listing,
        # verifying and deleting orphans all talk to the same servers.
        pool = DataStubPool(self.node.transport.secret)
        try:
            async for update in self._list_chunks(pool, census, request.verify, report):
                yield update
            findings = self._namespace_findings(report, scope)
            chunk_findings, orphans = self._chunk_findings(report, census, scope)
            if request.repair:
                yield _progress("repair", 0, 2)
                findings = await self._repair_namespace(context, report, findings)
                yield _progress("repair", 1, 2)
                deleted = await self._delete_orphans(pool, orphans, census)
                chunk_findings = [
                    _finding(f.problem, f.id, f.detail, f.repairable,
                             f.repaired or (f.problem == "orphan chunk" and f.id in deleted)
                             or f.problem == "corrupt copy")
                    for f in chunk_findings
                ]
                yield _progress("repair", 2, 2)
        finally:
            await pool.close()
        log.info("fsck at slot %d: %d findings in %.1f s", snap.slot,
                 len(findings) + len(chunk_findings), time.monotonic() - started)
        yield admin_pb2.FsckUpdate(report=admin_pb2.FsckReport(
            findings=[*findings, *chunk_findings],
            snapshot_slot=snap.slot,
            inodes=report.inodes,
            directories=report.directories,
            files=report.files,
            chunks=len(report.chunk_refs),
            copies=sum(len(census.holders.get(c, ())) for c in report.chunk_refs),
            unreachable_servers=census.unreachable,
        ))

    async def _fresh_snapshot(self) -> snapshot_files.Snapshot:
        """A snapshot at or past every write applied before fsck started."""
        target = self.node.applied_upto
        deadline = time.monotonic() + SNAPSHOT_WAIT_S
        while self.node.snapshot_slot < target:
            if time.monotonic() > deadline:
                raise FsckError("no snapshot could be taken in time")
            self.node.request_snapshot()
            await asyncio.sleep(0.05)
        return await asyncio.to_thread(_newest_snapshot, self.node.data_dir / SNAPSHOT_DIR)

    async def _list_chunks(self, pool: DataStubPool, census: ChunkCensus, verify: bool,
                           report: fsck.NamespaceReport) -> AsyncIterator[admin_pb2.FsckUpdate]:
        ring = self.proposer.state.namespace.state.ring
        # An "out" server may still hold the only copy of something: list it too.
        members = list(ring.members.values())
        for index, member in enumerate(members):
            yield _progress("chunks", index, len(members))
            try:
                await self._list_one(pool, member.id, member.addr, census)
            except grpc.aio.AioRpcError as err:
                log.warning("fsck: data server %d (%s) not listed: %s", member.id,
                            member.addr, err.code().name)
                census.unreachable.append(member.id)
        yield _progress("chunks", len(members), len(members))
        if verify:
            for index, member in enumerate(members):
                yield _progress("verify", index, len(members))
                if member.id not in census.unreachable:
                    await self._verify_one(pool, member.id, member.addr, census, report)
            yield _progress("verify", len(members), len(members))

    @staticmethod
    async def _list_one(pool: DataStubPool, server: int, addr: str, census: ChunkCensus) -> None:
        start = 0
        while True:
            page = await pool.stub(addr).ListChunks(
                data_pb2.ListChunksRequest(start=start, limit=LIST_PAGE),
                timeout=pool.call_timeout_s)
            for info in page.chunks:
                census.holders.setdefault(info.chunk_id, []).append(server)
                census.lengths[info.chunk_id] = info.length
            if not page.next:
                return
            start = page.next

    @staticmethod
    async def _verify_one(pool: DataStubPool, server: int, addr: str, census: ChunkCensus,
                          report: fsck.NamespaceReport) -> None:
        held = [c for c, servers in census.holders.items()
                if server in servers and c in report.chunk_refs]
        for first in range(0, len(held), VERIFY_BATCH):
            batch = held[first:first + VERIFY_BATCH]
            reply = await pool.stub(addr).HasChunks(
                data_pb2.HasChunksRequest(chunk_ids=batch, verify=True),
                timeout=pool.call_timeout_s)
            for chunk_id, good in zip(batch, reply.present, strict=True):
                if not good:  # the store has marked it; its repair pass replaces it
                    census.corrupt.setdefault(chunk_id, []).append(server)

    @staticmethod
    def _namespace_findings(report: fsck.NamespaceReport,
                            scope: set[int] | None) -> list[admin_pb2.FsckFinding]:
        return [
            _finding(f.problem.value, f.ino, f.detail, f.repairable)
            for f in report.findings
            if scope is None or f.problem == fsck.Problem.CHUNK_REFS_MISMATCH or f.ino in scope
        ]

    def _chunk_findings(self, report: fsck.NamespaceReport, census: ChunkCensus,
                        scope: set[int] | None) -> tuple[list[admin_pb2.FsckFinding], list[int]]:
        live = self.proposer.state.namespace.state
        replicas = live.ring.replicas
        findings: list[admin_pb2.FsckFinding] = []
        for chunk_id in sorted(report.chunk_refs):
            if chunk_id not in live.chunks.refs:
                continue  # released since the snapshot
            owners = report.chunk_owners.get(chunk_id, [])
            if scope is not None and not scope.intersection(owners):
                continue
            files = ", ".join(report.path_of(ino) for ino in owners[:3])
            bad = census.corrupt.get(chunk_id, [])
            for server in bad:
                findings.append(_finding(
                    "corrupt copy", chunk_id,
                    f"chunk {chunk_id} on data server {server} fails its checksum ({files}); "
                    "the server replaces it from a good copy", True))
            good = len(census.holders.get(chunk_id, ())) - len(bad)
            if good == 0:
                findings.append(_finding(
                    "missing chunk", chunk_id,
                    f"chunk {chunk_id} has no good copy on any data server: {files} lost data",
                    False))
            elif good < replicas:
                findings.append(_finding(
                    "under-replicated chunk", chunk_id,
                    f"chunk {chunk_id} has {good} of {replicas} copies ({files}); "
                    "anti-entropy adds the missing ones", True))
        orphans: list[int] = []
        committable = live.chunks.allocated_from(0)
        if scope is None:
            for chunk_id, servers in sorted(census.holders.items()):
                referenced = chunk_id in live.chunks.refs or chunk_id in report.chunk_refs
                # An id in a live session's range may still be committed, one past the
                # counter may be allocated next; one in the GC queue is being deleted.
                pending = chunk_id >= live.chunks.next_chunk_id or any(
                    first <= chunk_id < first + count for first, count in committable)
                if not referenced and not pending and chunk_id not in live.chunks.gc_queue:
                    orphans.append(chunk_id)
                    findings.append(_finding(
                        "orphan chunk", chunk_id,
                        f"chunk {chunk_id} ({census.lengths.get(chunk_id, 0)} bytes) on servers "
                        f"{', '.join(map(str, servers))} is referenced by no file", True))
        return findings, orphans

    async def _repair_namespace(self, context: Any, report: fsck.NamespaceReport,
                                findings: list[admin_pb2.FsckFinding]
                                ) -> list[admin_pb2.FsckFinding]:
        if not len(report.repair):
            return findings
        result = await self.proposer.system_op(context, report.repair)
        applied_all = isinstance(result, RepairResult) and result.skipped == 0
        if not applied_all:
            log.warning("fsck repair: %s (the namespace changed since the check)", result)
        return [
            _finding(f.problem, f.id, f.detail if applied_all else
                     f.detail + "; changed since the check, run fsck again", f.repairable,
                     repaired=applied_all and f.repairable)
            for f in findings
        ]

    async def _delete_orphans(self, pool: DataStubPool, orphans: list[int],
                              census: ChunkCensus) -> set[int]:
        ring = self.proposer.state.namespace.state.ring
        addrs = {m.id: m.addr for m in ring.members.values()}
        deleted: set[int] = set()
        for chunk_id in orphans:
            try:
                for server in census.holders[chunk_id]:
                    await pool.stub(addrs[server]).DeleteChunk(
                        data_pb2.DeleteChunkRequest(chunk_id=chunk_id),
                        timeout=pool.call_timeout_s)
                deleted.add(chunk_id)
            except (grpc.aio.AioRpcError, KeyError) as err:
                log.warning("fsck: orphan chunk %d not deleted: %s", chunk_id, err)
        return deleted
