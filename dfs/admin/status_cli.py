"""`dfs admin status`: the whole cluster on one screen, with its health first.

Asks every metadata member for its status, and the leader for the data servers
and the open sessions; dfs.admin.health turns the figures into OK/WARN/ERR.
Exit 0 when OK, 1 on WARN or ERR, 2 when no metadata server answers.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from dfs.admin.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    AdminUsageError,
    Target,
    admin_channel,
    fetch_status,
)
from dfs.admin.health import ClusterFigures, DataMember, Health, Level, MetaMember, assess
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2

CALL_TIMEOUT_S = 10.0
LEVEL_STYLE = {Level.OK: "bold green", Level.WARN: "bold yellow", Level.ERR: "bold red"}


def _meta_members(target: Target) -> tuple[list[MetaMember], admin_pb2.StatusReply | None,
                                            str | None]:
    """Every member the group knows of (and every --meta address), with its answer."""
    answers: dict[str, admin_pb2.StatusReply | None] = {
        addr: fetch_status(addr, target.secret) for addr in target.meta_addrs
    }
    if not any(answers.values()):
        raise AdminUsageError(f"no metadata server answers ({', '.join(target.meta_addrs)})")
    leader = next((r for r in answers.values() if r and r.meta.role == "leader"), None)
    view = leader or next(r for r in answers.values() if r)
    voters, learners = dict(view.meta.voters), dict(view.meta.learners)
    for addr in {*voters.values(), *learners.values()} - answers.keys():
        answers[addr] = fetch_status(addr, target.secret)
    if leader is None:
        leader = next((r for r in answers.values() if r and r.meta.role == "leader"), None)
    members = []
    for member_id, addr in sorted({**learners, **voters}.items()):
        reply = answers.get(addr)
        members.append(MetaMember(
            member_id, addr, member_id in voters, reply is not None,
            reply.meta.role if reply else "", reply.meta.applied if reply else 0))
    return members, leader, leader.addr if leader else None


def _at(addr: str, target: Target, method: str, request: Any) -> Any:
    with admin_channel(addr, target.secret) as channel:
        try:
            return getattr(admin_pb2_grpc.AdminStub(channel), method)(
                request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError:
            return None


def gather(target: Target) -> tuple[ClusterFigures, dict[str, Any]]:
    members, leader, leader_addr = _meta_members(target)
    listing: admin_pb2.DataListReply | None = None
    sessions: admin_pb2.SessionListReply | None = None
    if leader_addr:
        listing = _at(leader_addr, target, "DataList", common_pb2.Empty())
        sessions = _at(leader_addr, target, "SessionList", common_pb2.Empty())
    figures = ClusterFigures(
        meta=members,
        leader_chosen=leader.meta.chosen if leader else 0,
        data=[DataMember(s.id, s.addr, s.state, s.heard_s_ago, s.capacity, s.used, s.misplaced)
              for s in (listing.servers if listing else [])],
        under_replicated=listing.under_replicated if listing else 0,
        lost=listing.lost if listing else 0,
        replicas=listing.replicas if listing else 0,
        data_known=listing is not None,
    )
    extra = {
        "leader": leader.id if leader else 0,
        "ring_epoch": listing.ring_epoch if listing else 0,
        "live_chunks": listing.live_chunks if listing else 0,
        "chunks_per_server": {s.id: s.chunks for s in (listing.servers if listing else [])},
        "sessions": [
            {"id": s.id, "client": s.client, "idle_s": round(s.idle_s, 1),
             "open_inodes": s.open_inodes}
            for s in (sessions.sessions if sessions else [])
        ],
    }
    return figures, extra


def _as_json(figures: ClusterFigures, extra: dict[str, Any], health: Health) -> str:
    return json.dumps({
        "health": health.level.name,
        "reasons": health.reasons,
        "meta": [vars(m) for m in figures.meta],
        "leader_chosen": figures.leader_chosen,
        "data": [{**vars(d), "chunks": extra["chunks_per_server"].get(d.id, 0)}
                 for d in figures.data],
        "replicas": figures.replicas,
        "under_replicated": figures.under_replicated,
        "lost": figures.lost,
        "live_chunks": extra["live_chunks"],
        "ring_epoch": extra["ring_epoch"],
        "sessions": extra["sessions"],
    })


def _render(figures: ClusterFigures, extra: dict[str, Any], health: Health) -> None:
    console = Console(highlight=False)
    console.print(f"health: [{LEVEL_STYLE[health.level]}]{health.level.name}[/]")
    for reason in health.reasons:
        console.print(f"  - {reason}")
    meta = Table(title="metadata", title_justify="left")
    for column in ("id", "address", "role", "applied", "lag"):
        meta.add_column(column, justify="right" if column in ("id", "applied", "lag") else "left")
    for m in figures.meta:
        role = m.role if m.answered else "[red]down[/]"
        lag = str(max(0, figures.leader_chosen - m.applied)) if m.answered else "-"
        meta.add_row(str(m.id), m.addr, role if m.voter else f"{role} (learner)",
                     str(m.applied) if m.answered else "-", lag)
    console.print(meta)
    data = Table(title=f"data (R = {figures.replicas}, ring epoch {extra['ring_epoch']})",
                 title_justify="left")
    for column in ("id", "address", "state", "capacity GB", "used GB", "chunks", "heard"):
        data.add_column(column, justify="left" if column in ("address", "state") else "right")
    for d in figures.data:
        state = d.state if d.state == "up" else f"[yellow]{d.state}[/]"
        heard = "never" if d.heard_s_ago < 0 else f"{d.heard_s_ago:.1f}s ago"
        data.add_row(str(d.id), d.addr, state, f"{d.capacity / 1e9:.1f}", f"{d.used / 1e9:.2f}",
                     str(extra["chunks_per_server"].get(d.id, 0)), heard)
    console.print(data)
    console.print(f"chunks: {extra['live_chunks']} live, {figures.under_replicated} "
                  f"under-replicated, {figures.lost} lost")
    mounts = [s for s in extra["sessions"] if s["client"].startswith("mount:")]
    console.print(f"sessions: {len(extra['sessions'])} open ({len(mounts)} mounts)")


def status(target: Target, as_json: bool) -> int:
    figures, extra = gather(target)
    health = assess(figures)
    if as_json:
        print(_as_json(figures, extra, health))
    else:
        _render(figures, extra, health)
    return EXIT_OK if health.level == Level.OK else EXIT_PROBLEM
