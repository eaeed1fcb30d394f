"""The ring's quality figures on seeded synthetic clusters: balance, movement, weights,
failure domains. Shared by the ring tests and scripts/ring_figures.py, so both print
the same table. Pure: seeds drive xxhash, never a random source or a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import xxhash

from dfs.placement.members import DEFAULT_VNODES_PER_WEIGHT, Member, RingConfig
from dfs.placement.moves import summarize_moves_at
from dfs.placement.ring import Ring, chunk_positions

SERVERS = 10
CHUNKS = 100_000
REPLICAS = 3
# A mix of 1x, 2x and 4x disks: weights must show in the load even at R = 3, where a
# server holds at most one copy of a chunk.
WEIGHTS = (1, 1, 1, 1, 1, 2, 2, 2, 2, 2)
# Four racks for ten servers: enough domains for R = 3, unevenly filled.
DOMAINS = ("a", "a", "a", "b", "b", "b", "c", "c", "d", "d")
_MEMBER_ID_SPACE = 2**31
_CHUNK_BASE_SPACE = 2**48


@dataclass(frozen=True, slots=True)
class SeedFigures:
    """Every figure the ring tests bound, for one seed."""

    seed: int
    balance: float  # max / mean copies per server, equal weights
    add_moved: float  # copies moved by adding an 11th server / copies before
    add_all_to_new: bool  # every moved copy went to the new server
    remove_moved: float  # copies moved by removing one server / copies before
    remove_only_its_copies: bool  # exactly the removed server's copies moved
    weight_error: float  # max |share of copies / share of weight - 1|
    domains_distinct: float  # fraction of chunks whose homes span min(R, domains) domains
    domains_fallback_full: float  # same, with only 2 domains for R = 3 (must still give R)


def server_ids(seed: int, count: int) -> list[int]:
    """count distinct member ids derived from the seed."""
    ids: list[int] = []
    index = 0
    while len(ids) < count:
        candidate = xxhash.xxh64_intdigest(f"member/{seed}/{index}".encode()) % _MEMBER_ID_SPACE
        if candidate not in ids:
            ids.append(candidate)
        index += 1
    return ids


def chunk_ids(seed: int, count: int = CHUNKS) -> range:
    """Consecutive chunk ids from a seeded base, as sessions allocate them."""
    base = xxhash.xxh64_intdigest(f"chunks/{seed}".encode()) % _CHUNK_BASE_SPACE
    return range(base, base + count)


def copies_per_member(ring: Ring, positions: Sequence[int]) -> Counter[int]:
    """Copies each member is home to, over chunks at these sorted positions."""
    loads: Counter[int] = Counter()
    for arc, count in enumerate(ring.chunks_per_arc(positions)):
        for member in ring.homes_for_arc(arc):
            loads[member.id] += count
    return loads


def balance(ring: Ring, positions: Sequence[int]) -> float:
    """max / mean copies over the ring's weighted members."""
    loads = copies_per_member(ring, positions)
    members = [m.id for m in ring.members if m.weight > 0]
    per_member = [loads.get(member_id, 0) for member_id in members]
    return max(per_member) / (sum(per_member) / len(per_member))


def weight_error(ring: Ring, positions: Sequence[int]) -> float:
    """Largest relative gap between a member's share of copies and of weight."""
    loads = copies_per_member(ring, positions)
    total_copies = sum(loads.values())
    total_weight = sum(m.weight for m in ring.members)
    return max(
        abs((loads.get(m.id, 0) / total_copies) / (m.weight / total_weight) - 1)
        for m in ring.members
    )


def distinct_domain_fraction(ring: Ring, positions: Sequence[int]) -> float:
    """Fraction of chunks whose homes are R members spanning min(R, domains) domains."""
    domain_count = len({m.domain_key for m in ring.members})
    wanted_domains = min(ring.replicas, domain_count)
    good = 0
    for arc, count in enumerate(ring.chunks_per_arc(positions)):
        homes = ring.homes_for_arc(arc)
        spanned = len({m.domain_key for m in homes})
        if len(homes) == min(ring.replicas, len(ring.members)) and spanned == wanted_domains:
            good += count
    return good / len(positions)


def seed_figures(seed: int, vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT) -> SeedFigures:
    """All figures for one seed."""
    positions = sorted(chunk_positions(chunk_ids(seed)))
    member_ids = server_ids(seed, SERVERS + 1)
    members = [Member(member_id, f"data-{member_id}:7000") for member_id in member_ids]

    def ring(ring_members: Sequence[Member]) -> Ring:
        return Ring(
            RingConfig(
                epoch=1,
                members=tuple(ring_members),
                replicas=REPLICAS,
                vnodes_per_weight=vnodes_per_weight,
            )
        )

    base = ring(members[:SERVERS])
    grown = ring(members)
    shrunk = ring(members[1:SERVERS])
    added = summarize_moves_at(base, grown, positions)
    removed = summarize_moves_at(base, shrunk, positions)
    removed_member = members[0].id
    weighted = ring(
        [Member(m.id, m.addr, weight=w) for m, w in zip(members, WEIGHTS, strict=False)]
    )
    racked = ring([Member(m.id, m.addr, domain=d) for m, d in zip(members, DOMAINS, strict=False)])
    two_racks = ring([Member(m.id, m.addr, domain="ab"[i % 2]) for i, m in enumerate(members)])
    return SeedFigures(
        seed=seed,
        balance=balance(base, positions),
        add_moved=added.moved_fraction,
        add_all_to_new=set(added.gained_by) <= {members[SERVERS].id},
        remove_moved=removed.moved_fraction,
        remove_only_its_copies=(
            set(removed.dropped_by) == {removed_member}
            and removed.copies_moved == copies_per_member(base, positions)[removed_member]
        ),
        weight_error=weight_error(weighted, positions),
        domains_distinct=distinct_domain_fraction(racked, positions),
        domains_fallback_full=distinct_domain_fraction(two_racks, positions),
    )


TABLE_HEADER = (
    f"{'seed':>4} {'max/mean':>8} {'add moved':>9} {'->new':>5} {'rm moved':>8} "
    f"{'only its':>8} {'weight err':>10} {'domains':>7} {'2 racks':>7}"
)


def table_row(figures: SeedFigures) -> str:
    """One seed as a line of the figures table."""
    return (
        f"{figures.seed:>4} {figures.balance:>8.4f} {figures.add_moved:>9.4f} "
        f"{figures.add_all_to_new!s:>5} {figures.remove_moved:>8.4f} "
        f"{figures.remove_only_its_copies!s:>8} {figures.weight_error:>10.4f} "
        f"{figures.domains_distinct:>7.4f} {figures.domains_fallback_full:>7.4f}"
    )
