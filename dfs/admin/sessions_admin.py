"""`dfs admin sessions [--evict ID]` on the metadata leader: who is connected, and
ending a session by hand (a hung mount whose chunk ranges hold back the sweep, or
whose open files keep orphans alive)."""

from __future__ import annotations

import time
from typing import Any

from dfs.meta.duties import LeaderDuties
from dfs.meta.proposer import Proposer
from dfs.paxos import sessions
from dfs.rpc import admin_pb2


class SessionAdmin:
    def __init__(self, proposer: Proposer, duties: LeaderDuties) -> None:
        self.proposer = proposer
        self.duties = duties

    def list(self) -> admin_pb2.SessionListReply:
        state = self.proposer.state
        table = state.sessions
        namespace = state.namespace.state
        now_ns = table.state_time_ns
        infos = [
            admin_pb2.SessionInfo(
                id=session_id,
                client=self.duties.session_clients.get(session_id, ""),
                idle_s=max(0, now_ns - last_active) / 1e9,
                open_inodes=len(namespace.open_reports.get(session_id, ())),
                chunk_ranges=len(namespace.chunks.ranges.get(session_id, ())),
            )
            for session_id, last_active in sorted(table.last_active_ns().items())
        ]
        return admin_pb2.SessionListReply(sessions=infos, timeout_s=table.timeout_ns / 1e9)

    async def evict(self, context: Any, session_id: int) -> admin_pb2.AdminReply:
        if session_id not in self.proposer.state.sessions.last_active_ns():
            return admin_pb2.AdminReply(ok=False, message=f"no open session {session_id}")
        outcome = await self.proposer.session(
            context, sessions.CloseSession(session_id, time.time_ns())
        )
        if outcome.status:
            return admin_pb2.AdminReply(ok=False, message=f"session {session_id}: errno "
                                        f"{outcome.status} (already gone)")
        self.duties.session_clients.pop(session_id, None)
        return admin_pb2.AdminReply(
            ok=True, message=f"session {session_id} ended: its uncommitted writes can no "
            "longer commit and its open files were released")
