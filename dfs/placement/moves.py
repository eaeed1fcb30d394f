"""Which chunk copies move between two rings: rebalance planning and `ring plan`.

Owns the comparison of the preference lists of two ring epochs. Pure, like the
ring: it must never read disks or talk to servers; callers bring the chunk ids.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dfs.placement.ring import Ring, chunk_positions


@dataclass(frozen=True, slots=True)
class ChunkMove:
    """One chunk whose homes differ between the two rings."""

    chunk_id: int
    gained: tuple[int, ...]  # member ids that must receive a copy
    dropped: tuple[int, ...]  # member ids whose copy is no longer a home


@dataclass(slots=True)
class MoveSummary:
    """Totals over a set of chunks (copies = chunk x home pairs)."""

    chunks: int = 0
    copies_before: int = 0
    copies_after: int = 0
    copies_moved: int = 0  # copies that land on a member that was not a home before
    gained_by: Counter[int] = field(default_factory=Counter)  # member id -> copies gained
    dropped_by: Counter[int] = field(default_factory=Counter)  # member id -> copies dropped

    @property
    def moved_fraction(self) -> float:
        """Moved copies over the copies placed before (0 when nothing was placed)."""
        return self.copies_moved / self.copies_before if self.copies_before else 0.0


def plan_moves(old: Ring, new: Ring, chunk_ids: Iterable[int]) -> list[ChunkMove]:
    """Every chunk among chunk_ids whose preference list changes, in the given order."""
    moves: list[ChunkMove] = []
    for chunk_id in chunk_ids:
        before = {member.id for member in old.preference_list(chunk_id)}
        after = {member.id for member in new.preference_list(chunk_id)}
        if before != after:
            moves.append(
                ChunkMove(chunk_id, tuple(sorted(after - before)), tuple(sorted(before - after)))
            )
    return moves


def summarize_moves(old: Ring, new: Ring, chunk_ids: Iterable[int]) -> MoveSummary:
    """The totals of plan_moves over chunk_ids."""
    return summarize_moves_at(old, new, sorted(chunk_positions(chunk_ids)))


def summarize_moves_at(old: Ring, new: Ring, sorted_positions: Sequence[int]) -> MoveSummary:
    """summarize_moves from sorted chunk positions (see ring.chunk_positions), so a caller
    comparing many rings over the same chunks hashes and sorts them once.

    The vnodes of both rings cut the circle into segments whose chunks all share one
    (old arc, new arc) pair, so the work is per segment, not per chunk.
    """
    summary = MoveSummary(chunks=len(sorted_positions))
    for (old_arc, new_arc), count in _chunks_per_arc_pair(old, new, sorted_positions).items():
        before = _home_ids(old, old_arc)
        after = _home_ids(new, new_arc)
        summary.copies_before += count * len(before)
        summary.copies_after += count * len(after)
        for member_id in after - before:
            summary.gained_by[member_id] += count
            summary.copies_moved += count
        for member_id in before - after:
            summary.dropped_by[member_id] += count
    return summary


def _chunks_per_arc_pair(
    old: Ring, new: Ring, sorted_positions: Sequence[int]
) -> Counter[tuple[int, int]]:
    pairs: Counter[tuple[int, int]] = Counter()
    below = 0
    for boundary in sorted(set(old.vnode_positions) | set(new.vnode_positions)):
        upto = bisect_right(sorted_positions, boundary)
        if upto > below:
            pairs[_arc(old, boundary), _arc(new, boundary)] += upto - below
        below = upto
    if below < len(sorted_positions):
        # Past the last vnode of both rings, every chunk wraps to arc 0 of each.
        pairs[_arc(old, 0), _arc(new, 0)] += len(sorted_positions) - below
    return pairs


def _arc(ring: Ring, position: int) -> int:
    # -1 stands for "no arc": an empty ring places nothing.
    return ring.arc_at(position) if ring.arc_count else -1


def _home_ids(ring: Ring, arc: int) -> frozenset[int]:
    if arc < 0:
        return frozenset()
    return frozenset(member.id for member in ring.homes_for_arc(arc))
