"""What only the metadata leader does, on its own clock: notice silent data servers
(down after a few seconds, out of the ring after a grace period, up again when
they return; a draining one goes straight out after the grace period), report
their usage into the state, and release orphans no live session holds open. Every
decision becomes a proposed system command; the leader-local bookkeeping here is
rebuilt from scratch by each new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from dfs.meta import ops
from dfs.meta.replicated import MetaStateMachine, system_command
from dfs.meta.types import MemberState
from dfs.paxos.node import NotLeader, PaxosNode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DutyTimes:
    interval_s: float = 1.0
    down_after_s: float = 5.0  # a data server silent this long is marked down
    out_after_s: float = 300.0  # down this long: out of the ring, its chunks repaired elsewhere
    usage_report_s: float = 10.0  # how often heartbeat figures are written into the state


@dataclass
class DataServerSeen:
    last_heard: float
    capacity: int = 0
    used: int = 0
    chunks: int = 0
    load: int = 0
    under_replicated: int = 0
    lost: int = 0
    misplaced: int = 0
    pass_epoch: int = 0  # ring epoch of its last complete anti-entropy pass
    live_held: int = 0
    reported_at: float = 0.0


@dataclass
class LeaderDuties:
    node: PaxosNode
    state: MetaStateMachine
    times: DutyTimes = field(default_factory=DutyTimes)
    data_servers: dict[int, DataServerSeen] = field(default_factory=dict)
    open_sets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    session_clients: dict[int, str] = field(default_factory=dict)
    _leading_since: float | None = None

    # ---- fed by the services ------------------------------------------------------

    def session_opened(self, session: int, client: str) -> None:
        self.session_clients[session] = client

    def open_set_changed(self, session: int, inodes: tuple[int, ...]) -> bool:
        return self.open_sets.get(session) != inodes

    def open_set_recorded(self, session: int, inodes: tuple[int, ...]) -> None:
        self.open_sets[session] = inodes

    def heartbeat(self, server_id: int, seen: DataServerSeen) -> DataServerSeen:
        previous = self.data_servers.get(server_id)
        if previous is not None:
            seen.reported_at = previous.reported_at
        self.data_servers[server_id] = seen
        return seen

    # ---- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.times.interval_s)
            if not self.node.core.is_leader:
                self._forget_leadership()
                continue
            now = time.monotonic()
            if self._leading_since is None:
                self._leading_since = now
            with contextlib.suppress(NotLeader, TimeoutError):
                await self._check_data_servers(now)
                await self._report_usage(now)
                await self._release_orphans()

    def _forget_leadership(self) -> None:
        """A new leader knows nothing of what the old one heard: start over."""
        self._leading_since = None
        self.data_servers.clear()
        self.open_sets.clear()

    async def _propose(self, op: ops.Command) -> None:
        await self.node.propose(system_command(op))

    async def _check_data_servers(self, now: float) -> None:
        assert self._leading_since is not None
        ring = self.state.namespace.state.ring.ring()
        for member in ring.members:
            seen = self.data_servers.get(member.id)
            # A new leader gives every server a full timeout before judging it.
            last = seen.last_heard if seen else self._leading_since
            silent = now - last
            if member.state == MemberState.UP and silent > self.times.down_after_s:
                log.warning("data server %d silent for %.1f s: marking it down", member.id, silent)
                await self._propose(ops.SetMemberState(member.id, MemberState.DOWN))
            elif (member.state in (MemberState.DOWN, MemberState.DRAINING)
                  and silent > self.times.out_after_s):
                # A draining server that died stays no home (marking it down would
                # make it one again); out, its chunks are repaired from their homes.
                log.warning("data server %d silent for %.0f s: taking it out of the ring",
                            member.id, silent)
                await self._propose(ops.SetMemberState(member.id, MemberState.OUT))
            elif member.state == MemberState.DOWN and seen and silent < self.times.down_after_s:
                log.info("data server %d is back: marking it up", member.id)
                await self._propose(ops.SetMemberState(member.id, MemberState.UP))

    async def _report_usage(self, now: float) -> None:
        for server_id, seen in list(self.data_servers.items()):
            if now - seen.reported_at >= self.times.usage_report_s:
                seen.reported_at = now
                await self._propose(ops.ReportUsage(server_id, seen.capacity, seen.used))

    async def _release_orphans(self) -> None:
        """Free orphans that no live session can still hold open.

        Every live session must have reported its open set to this leader, and an
        orphan must be older than one session timeout, so the report of anyone who
        opened it before the unlink has had time to arrive.
        """
        live = set(self.state.sessions.live_sessions())
        if not live <= set(self.open_sets):
            return
        namespace = self.state.namespace.state
        if not namespace.orphans:
            return
        horizon = self.state.sessions.state_time_ns - self.state.sessions.timeout_ns
        if any(orphaned_at < horizon for orphaned_at in namespace.orphans.values()):
            await self._propose(ops.ReleaseOrphans(horizon))
