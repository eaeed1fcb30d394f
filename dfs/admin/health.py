"""The cluster's health at a glance: OK, WARN or ERR and every reason, from the
figures `dfs admin status` gathers. Pure, so each rule is unit-tested."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# A replica this many slots behind the leader is lagging (it catches up by
# snapshot past the leader's log, and is no help to a quorum meanwhile).
LAG_SLOTS = 1000
# A data server unheard for longer than this is treated as down, whatever its
# recorded state (the leader marks it down at 5 s).
SILENT_S = 5.0
FULL_FRACTION = 0.85


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    ERR = 2


@dataclass(frozen=True)
class MetaMember:
    id: int
    addr: str
    voter: bool
    answered: bool
    role: str = ""  # leader, follower, candidate, learner
    applied: int = 0


@dataclass(frozen=True)
class DataMember:
    id: int
    addr: str
    state: str  # up, down, out, draining
    heard_s_ago: float  # -1: never
    capacity: int
    used: int
    misplaced: int = 0


@dataclass
class ClusterFigures:
    meta: list[MetaMember]
    leader_chosen: int  # the leader's chosen slot (0 when no leader answered)
    data: list[DataMember] = field(default_factory=list)
    under_replicated: int = 0
    lost: int = 0
    replicas: int = 3
    data_known: bool = True  # the leader answered DataList


@dataclass
class Health:
    level: Level = Level.OK
    reasons: list[str] = field(default_factory=list)

    def add(self, level: Level, reason: str) -> None:
        self.level = max(self.level, level)
        self.reasons.append(reason)


def assess(figures: ClusterFigures) -> Health:
    health = Health()
    voters = [m for m in figures.meta if m.voter]
    answering = [m for m in voters if m.answered]
    leaders = [m for m in figures.meta if m.answered and m.role == "leader"]
    if len(answering) * 2 <= len(voters):
        health.add(Level.ERR, f"no metadata quorum: {len(answering)} of {len(voters)} "
                   "voters answer; writes are stopped")
    elif not leaders:
        health.add(Level.ERR, "no metadata leader (an election is under way, or it cannot win)")
    for member in figures.meta:
        if not member.answered:
            health.add(Level.WARN, f"metadata {member.id} ({member.addr}) does not answer")
        elif figures.leader_chosen - member.applied > LAG_SLOTS:
            health.add(Level.WARN, f"metadata {member.id} lags the leader by "
                       f"{figures.leader_chosen - member.applied} slots")
    if not figures.data_known:
        health.add(Level.WARN, "data servers unknown: the metadata leader did not list them")
    serving = 0
    for server in figures.data:
        silent = server.heard_s_ago < 0 or server.heard_s_ago > SILENT_S
        if server.state == "out":
            if server.misplaced:
                health.add(Level.WARN, f"data {server.id} is out with {server.misplaced} "
                           "copies still to move")
            continue
        if server.state == "down" or silent:
            health.add(Level.WARN, f"data {server.id} ({server.addr}) is down")
            continue
        serving += 1
        if server.capacity and server.used > FULL_FRACTION * server.capacity:
            health.add(Level.WARN, f"data {server.id} is {server.used / server.capacity:.0%} "
                       "full")
        if server.state == "draining":
            health.add(Level.WARN, f"data {server.id} is draining")
    if figures.data_known and serving < figures.replicas:
        health.add(Level.ERR if serving == 0 else Level.WARN,
                   f"{serving} data servers serving, fewer than R = {figures.replicas}")
    if figures.lost:
        health.add(Level.ERR, f"{figures.lost} chunks have no copy left (dfs admin fsck lists "
                   "the files)")
    if figures.under_replicated:
        health.add(Level.WARN, f"{figures.under_replicated} chunks under-replicated "
                   "(repair is under way)")
    return health
