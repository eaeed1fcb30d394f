"""`dfs admin ring plan`: what a ring change would move, priced on the metadata
leader without making the change.

Owns building the proposed ring from a request and totalling the copies and bytes
that change homes. Chunk sizes come from the namespace's block maps (the furthest
byte any slice reads from a chunk), so nothing is asked of the data servers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from dfs.meta.state import NamespaceState
from dfs.placement.members import Member, MemberState, RingConfig
from dfs.placement.moves import plan_moves
from dfs.placement.ring import Ring
from dfs.rpc import admin_pb2

PLAN_ACTIONS = ("add", "remove", "weight", "drain", "out")
INODES_PER_SLICE = 10_000  # inodes walked between yields to the event loop


class PlanError(ValueError):
    """The requested change cannot be made to this ring; the message says why."""


def proposed_config(current: RingConfig, request: admin_pb2.RingPlanRequest) -> RingConfig:
    """The ring after the change (epoch + 1); PlanError when it makes no sense."""
    members = {m.id: m for m in current.members}
    action, member_id = request.action, request.id
    if action not in PLAN_ACTIONS:
        raise PlanError(f"unknown change {action!r}: one of {', '.join(PLAN_ACTIONS)}")
    if action == "add":
        if member_id in members:
            raise PlanError(f"data server {member_id} is already in the ring")
        if member_id == 0 or ":" not in request.addr:
            raise PlanError("add needs ID and HOST:PORT")
        members[member_id] = Member(member_id, request.addr, request.weight or 1, request.domain)
    elif member_id not in members:
        raise PlanError(f"data server {member_id} is not in the ring")
    elif action == "remove":
        del members[member_id]
    elif action == "weight":
        if request.weight <= 0:
            raise PlanError("weight must be > 0")
        members[member_id] = replace(members[member_id], weight=request.weight)
    else:
        state = MemberState.DRAINING if action == "drain" else MemberState.OUT
        members[member_id] = replace(members[member_id], state=state)
    return replace(current, epoch=current.epoch + 1,
                   members=tuple(members[k] for k in sorted(members)))


async def live_chunk_lengths(state: NamespaceState) -> dict[int, int]:
    """Every referenced chunk with its length as the block maps know it. Walks the
    inodes in slices, yielding between them, so the leader keeps serving."""
    lengths: dict[int, int] = dict.fromkeys(state.chunks.refs, 0)
    inodes = list(state.inodes.values())
    for first in range(0, len(inodes), INODES_PER_SLICE):
        for inode in inodes[first : first + INODES_PER_SLICE]:
            block_map = inode.block_map()
            for slices in (block_map or {}).values():
                for piece in slices:
                    end = piece.offset_in_chunk + piece.length
                    if lengths.get(piece.chunk_id, end) < end:
                        lengths[piece.chunk_id] = end
        await asyncio.sleep(0)
    return lengths


def price_plan(old: RingConfig, new: RingConfig,
               lengths: dict[int, int]) -> admin_pb2.RingPlanReply:
    """Copies and bytes that change homes between two rings (pure; run off the loop)."""
    old_ring, new_ring = Ring(old), Ring(new)
    gained: Counter[int] = Counter()
    dropped: Counter[int] = Counter()
    gained_bytes: Counter[int] = Counter()
    moves = plan_moves(old_ring, new_ring, lengths)
    for move in moves:
        for member_id in move.gained:
            gained[member_id] += 1
            gained_bytes[member_id] += lengths[move.chunk_id]
        for member_id in move.dropped:
            dropped[member_id] += 1
    return admin_pb2.RingPlanReply(
        from_epoch=old.epoch,
        chunks=len(lengths),
        chunks_moved=len(moves),
        copies_before=_copies(old_ring, lengths),
        copies_moved=sum(gained.values()),
        bytes_moved=sum(gained_bytes.values()),
        bytes_total=sum(lengths.values()),
        members=[
            admin_pb2.MemberMove(id=member_id, gained=gained[member_id],
                                 dropped=dropped[member_id],
                                 gained_bytes=gained_bytes[member_id])
            for member_id in sorted(set(gained) | set(dropped))
        ],
    )


def _copies(ring: Ring, chunk_ids: Iterable[int]) -> int:
    return sum(len(ring.preference_list(chunk_id)) for chunk_id in chunk_ids)
