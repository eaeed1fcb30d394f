"""The consistent-hash ring: where every copy of a chunk lives, from plain data alone.

Owns vnode positions, preference lists, write targets and the readers' walk. It is
pure: the same RingConfig gives the same answers in every process, so it must never
read a clock, a random source, a file or the network.

Placement rules
---------------
- Every member not `out` with weight > 0 has weight * vnodes_per_weight virtual nodes
  at xxh64(member id, vnode index); a chunk sits at xxh64(chunk id) and belongs to the
  arc ending at the first vnode clockwise from it. All chunks of one arc share every
  list below, so lists are computed once per arc and cached.
- Ring order of a chunk: the distinct members met walking clockwise from it.
- Preference list (the chunk's homes): the first R members in ring order whose state
  is `up` or `down`, each from a failure domain not used yet; when too few domains
  exist, the rest are filled in ring order. Anti-entropy keeps copies on the homes.
- `up`: home, written to, read from.
- `down`: keeps its place in the preference list, so a short outage moves nothing;
  writers skip it (see write targets) and readers try it last.
- `draining`: not a home (its copies migrate away), never written to, still read
  from: it stays on the ring, so the readers' walk reaches it.
- `out`: has no vnodes; it takes no part in placement or reads.
- Write targets: chosen like the preference list but among `up` members only: the
  first R distinct live servers clockwise, distinct domains when labelled. When all
  homes are up these are the homes.
- Walk: every further member in ring order after the preference list, for readers.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence

import xxhash

from dfs.placement.members import Member, MemberState, RingConfig

_VNODE_KEY = struct.Struct("<II")  # (member id, vnode index)
_CHUNK_KEY_BYTES = 8

_HOME_STATES = frozenset({MemberState.UP, MemberState.DOWN})
_READ_FIRST_STATES = frozenset({MemberState.UP, MemberState.DRAINING})


def vnode_position(member_id: int, vnode_index: int) -> int:
    """Where one virtual node of a member sits on the 64-bit ring."""
    return int(xxhash.xxh64_intdigest(_VNODE_KEY.pack(member_id, vnode_index)))


def chunk_position(chunk_id: int) -> int:
    """Where a chunk sits on the 64-bit ring."""
    return int(xxhash.xxh64_intdigest(chunk_id.to_bytes(_CHUNK_KEY_BYTES, "little")))


def chunk_positions(chunk_ids: Iterable[int]) -> list[int]:
    """chunk_position of many ids, without per-call overhead."""
    digest = xxhash.xxh64_intdigest
    return [digest(chunk_id.to_bytes(_CHUNK_KEY_BYTES, "little")) for chunk_id in chunk_ids]


class Ring:
    """Placement for one ring epoch. Build once per epoch (see RingCache)."""

    def __init__(self, config: RingConfig) -> None:
        self.config = config
        self.epoch = config.epoch
        self.replicas = config.replicas
        self._by_id = {member.id: member for member in config.members}
        self._on_ring: tuple[Member, ...] = tuple(
            sorted(
                (m for m in config.members if m.state is not MemberState.OUT and m.weight > 0),
                key=lambda m: m.id,
            )
        )
        points = sorted(
            (vnode_position(member.id, index), member.id, slot)
            for slot, member in enumerate(self._on_ring)
            for index in range(member.weight * config.vnodes_per_weight)
        )
        self._positions: list[int] = [position for position, _, _ in points]
        self._arc_owner: list[int] = [slot for _, _, slot in points]
        arc_count = len(points)
        self._homes_by_arc: list[tuple[Member, ...] | None] = [None] * arc_count
        self._writers_by_arc: list[tuple[Member, ...] | None] = [None] * arc_count
        domain_numbers: dict[str, int] = {}
        self._slot_domain: list[int] = [
            domain_numbers.setdefault(m.domain_key, len(domain_numbers)) for m in self._on_ring
        ]
        self._slot_is_home = [m.state in _HOME_STATES for m in self._on_ring]
        self._slot_is_writer = [m.state is MemberState.UP for m in self._on_ring]
        self._home_domains = _domain_count(m for m in self._on_ring if m.state in _HOME_STATES)
        self._writer_domains = _domain_count(m for m in self._on_ring if m.state is MemberState.UP)

    # -- lookups by chunk id -------------------------------------------------------

    def preference_list(self, chunk_id: int) -> tuple[Member, ...]:
        """The chunk's R homes (fewer when the ring has fewer eligible members)."""
        if not self._positions:
            return ()
        return self.homes_for_arc(self.arc_of(chunk_id))

    def write_targets(self, chunk_id: int) -> tuple[Member, ...]:
        """Where a new copy is written: R live servers, fewer when fewer are up."""
        if not self._positions:
            return ()
        return self.write_targets_for_arc(self.arc_of(chunk_id))

    def walk(self, chunk_id: int) -> Iterator[Member]:
        """Every member on the ring beyond the preference list, in ring order."""
        if not self._positions:
            return
        homes = {member.id for member in self.preference_list(chunk_id)}
        for member in self._ring_order(self.arc_of(chunk_id)):
            if member.id not in homes:
                yield member

    def read_order(self, chunk_id: int) -> list[Member]:
        """Where a reader looks, best first: live homes, then live and draining members
        in ring order (write targets that replaced a down home are among the first),
        then down members, which may be back but probably are not."""
        if not self._positions:
            return []
        homes = self.preference_list(chunk_id)
        further = list(self.walk(chunk_id))
        first = [m for m in homes if m.state is MemberState.UP]
        first += [m for m in further if m.state in _READ_FIRST_STATES]
        last = [m for m in homes if m.state is MemberState.DOWN]
        last += [m for m in further if m.state is MemberState.DOWN]
        return first + last

    # -- bulk interface: map ids to arcs once, then ask per arc ---------------------

    @property
    def arc_count(self) -> int:
        """Number of arcs (= virtual nodes); 0 for an empty ring."""
        return len(self._positions)

    def arc_of(self, chunk_id: int) -> int:
        """Index of the arc holding the chunk (requires a non-empty ring)."""
        return self.arc_at(chunk_position(chunk_id))

    def arc_at(self, position: int) -> int:
        """Index of the arc holding a ring position: the first vnode at or after it,
        wrapping past the last (requires a non-empty ring)."""
        arc = bisect_left(self._positions, position)
        return arc if arc < len(self._positions) else 0

    def arcs_of(self, chunk_ids: Iterable[int]) -> list[int]:
        """arc_of for many ids, without per-call overhead; the wrap-around past the
        last vnode is reported as arc_count and means arc 0."""
        vnode_positions = self._positions
        if not vnode_positions:
            raise ValueError("the ring has no members to place chunks on")
        return [bisect_left(vnode_positions, position) for position in chunk_positions(chunk_ids)]

    def chunks_per_arc(self, sorted_positions: Sequence[int]) -> list[int]:
        """How many of the chunks at these sorted positions fall in each arc: one bisect
        per vnode instead of one per chunk."""
        counts: list[int] = []
        below = 0
        for arc_end in self._positions:
            upto = bisect_right(sorted_positions, arc_end)
            counts.append(upto - below)
            below = upto
        if counts:
            counts[0] += len(sorted_positions) - below  # past the last vnode wraps to arc 0
        return counts

    @property
    def vnode_positions(self) -> Sequence[int]:
        """Sorted positions of every vnode; arc i ends at vnode_positions[i]."""
        return self._positions

    def homes_for_arc(self, arc: int) -> tuple[Member, ...]:
        """The preference list shared by every chunk of this arc."""
        return self._cached_select(self._homes_by_arc, arc, self._slot_is_home, self._home_domains)

    def write_targets_for_arc(self, arc: int) -> tuple[Member, ...]:
        """The write targets shared by every chunk of this arc."""
        return self._cached_select(
            self._writers_by_arc, arc, self._slot_is_writer, self._writer_domains
        )

    # -- members -------------------------------------------------------------------

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member of the config, `out` ones included."""
        return self.config.members

    def member(self, member_id: int) -> Member:
        """The member with this id; KeyError when absent."""
        return self._by_id[member_id]

    # -- internals -----------------------------------------------------------------

    def _ring_order(self, arc: int) -> Iterator[Member]:
        """Distinct members clockwise from the arc's vnode."""
        on_ring = self._on_ring
        owners = self._arc_owner
        arc_count = len(owners)
        seen: set[int] = set()
        for step in range(arc_count):
            slot = owners[(arc + step) % arc_count]
            if slot not in seen:
                seen.add(slot)
                yield on_ring[slot]
                if len(seen) == len(on_ring):
                    return

    def _cached_select(
        self,
        cache: list[tuple[Member, ...] | None],
        arc: int,
        eligible: Sequence[bool],
        domains_available: int,
    ) -> tuple[Member, ...]:
        arc %= len(self._positions)
        chosen = cache[arc]
        if chosen is None:
            chosen = cache[arc] = self._select(arc, eligible, domains_available)
        return chosen

    def _select(
        self, arc: int, eligible: Sequence[bool], domains_available: int
    ) -> tuple[Member, ...]:
        """First R eligible members in ring order from the arc, distinct domains first.

        Walks vnode owners by slot number (ints, not Members) because it runs once for
        every arc of every ring built.
        """
        owners = self._arc_owner
        arc_count = len(owners)
        domain_of = self._slot_domain
        wanted = self.replicas
        chosen: list[int] = []
        spill: list[int] = []  # eligible, but its domain was already used
        used_domains: set[int] = set()
        seen: set[int] = set()
        for step in range(arc_count):
            slot = owners[(arc + step) % arc_count]
            if slot in seen:
                continue
            seen.add(slot)
            if eligible[slot]:
                if domain_of[slot] in used_domains:
                    spill.append(slot)
                else:
                    used_domains.add(domain_of[slot])
                    chosen.append(slot)
                if len(chosen) == wanted:
                    break
                if len(chosen) == domains_available and len(chosen) + len(spill) >= wanted:
                    break
            if len(seen) == len(self._on_ring):
                break
        return tuple(self._on_ring[slot] for slot in chosen + spill[: wanted - len(chosen)])


class RingCache:
    """Rings by epoch, so each party builds a ring once per epoch."""

    def __init__(self, capacity: int = 4) -> None:
        self._capacity = capacity
        self._rings: dict[int, Ring] = {}

    def get(self, config: RingConfig) -> Ring:
        """The ring for this config, built on first use."""
        cached = self._rings.get(config.epoch)
        # Comparing configs guards against two different rings claiming one epoch.
        if cached is not None and cached.config == config:
            return cached
        ring = Ring(config)
        self._rings[config.epoch] = ring
        while len(self._rings) > self._capacity:
            del self._rings[min(self._rings)]
        return ring


def ring_of(members: Sequence[Member], epoch: int = 1, **settings: int) -> Ring:
    """Convenience for tests and tools: a Ring from members and keyword settings."""
    return Ring(RingConfig(epoch=epoch, members=tuple(members), **settings))


def _domain_count(members: Iterable[Member]) -> int:
    return len({member.domain_key for member in members})
