"""Ring placement rules on small rings, checked against a brute-force walk."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from dfs.placement.members import Member, MemberState, RingConfig, RingConfigError
from dfs.placement.moves import plan_moves, summarize_moves
from dfs.placement.ring import Ring, RingCache, chunk_position, ring_of, vnode_position

CHUNKS = range(1000, 3000)
VNODES = 16  # small rings keep the brute-force oracle cheap


def members(count: int) -> list[Member]:
    return [Member(i, f"10.0.0.{i}:7000") for i in range(1, count + 1)]


def with_state(ring_members: list[Member], member_id: int, state: MemberState) -> list[Member]:
    return [
        Member(m.id, m.addr, m.weight, m.domain, state) if m.id == member_id else m
        for m in ring_members
    ]


def oracle_ring_order(ring_members: list[Member], chunk_id: int) -> list[int]:
    """Distinct member ids clockwise from the chunk, by sorting every vnode."""
    vnodes = sorted(
        (vnode_position(m.id, i), m.id)
        for m in ring_members
        if m.state is not MemberState.OUT
        for i in range(m.weight * VNODES)
    )
    position = chunk_position(chunk_id)
    start = next((k for k, (p, _) in enumerate(vnodes) if p >= position), 0)
    order: list[int] = []
    for k in range(len(vnodes)):
        member_id = vnodes[(start + k) % len(vnodes)][1]
        if member_id not in order:
            order.append(member_id)
    return order


def ids(found: Iterable[Member]) -> list[int]:
    return [m.id for m in found]


def test_preference_list_is_first_r_distinct_clockwise() -> None:
    ring_members = members(6)
    ring = ring_of(ring_members, vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS[:300]:
        order = oracle_ring_order(ring_members, chunk_id)
        assert ids(ring.preference_list(chunk_id)) == order[:3]
        assert ids(ring.write_targets(chunk_id)) == order[:3]
        assert ids(ring.walk(chunk_id)) == order[3:]


def test_same_data_gives_same_ring_whatever_the_member_order() -> None:
    ring_members = members(7)
    forward = ring_of(ring_members, vnodes_per_weight=VNODES)
    backward = ring_of(list(reversed(ring_members)), vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS:
        assert ids(forward.preference_list(chunk_id)) == ids(backward.preference_list(chunk_id))


def test_down_member_keeps_its_place_but_writers_skip_to_the_next_live() -> None:
    ring_members = with_state(members(6), 2, MemberState.DOWN)
    ring = ring_of(ring_members, vnodes_per_weight=VNODES)
    checked = 0
    for chunk_id in CHUNKS:
        order = oracle_ring_order(ring_members, chunk_id)
        assert ids(ring.preference_list(chunk_id)) == order[:3]
        assert ids(ring.write_targets(chunk_id)) == [m for m in order if m != 2][:3]
        if 2 in order[:3]:
            checked += 1
            read = ids(ring.read_order(chunk_id))
            assert read[-1] == 2, "a down home is tried last"
            assert read[:3] == [m for m in order if m != 2][:3]
    assert checked > 0


def test_draining_member_gets_no_chunks_but_is_still_read() -> None:
    ring_members = with_state(members(6), 4, MemberState.DRAINING)
    ring = ring_of(ring_members, vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS[:500]:
        order = oracle_ring_order(ring_members, chunk_id)
        homes = [m for m in order if m != 4][:3]
        assert ids(ring.preference_list(chunk_id)) == homes
        assert ids(ring.write_targets(chunk_id)) == homes
        assert 4 in ids(ring.walk(chunk_id))
        assert sorted(ids(ring.read_order(chunk_id))) == [1, 2, 3, 4, 5, 6]


def test_out_member_takes_no_part() -> None:
    ring = ring_of(with_state(members(5), 3, MemberState.OUT), vnodes_per_weight=VNODES)
    without = ring_of([m for m in members(5) if m.id != 3], vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS:
        assert 3 not in ids(ring.read_order(chunk_id))
        assert ids(ring.preference_list(chunk_id)) == ids(without.preference_list(chunk_id))


def test_fewer_live_servers_than_r_gives_fewer_write_targets() -> None:
    ring_members = with_state(with_state(members(3), 1, MemberState.DOWN), 2, MemberState.DOWN)
    ring = ring_of(ring_members, vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS[:100]:
        assert ids(ring.write_targets(chunk_id)) == [3]
        assert sorted(ids(ring.preference_list(chunk_id))) == [1, 2, 3]


def test_failure_domains_distinct_then_fallback_in_ring_order() -> None:
    racked = [
        Member(m.id, m.addr, domain="rack-a" if m.id <= 4 else "rack-b") for m in members(6)
    ]
    ring = ring_of(racked, vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS[:500]:
        order = oracle_ring_order(racked, chunk_id)
        homes = ring.preference_list(chunk_id)
        assert len({m.id for m in homes}) == 3
        assert {m.domain for m in homes[:2]} == {"rack-a", "rack-b"}
        # The filler is the first member in ring order not already chosen.
        assert homes[2].id == next(m for m in order if m not in ids(homes[:2]))


def test_unlabelled_members_each_count_as_their_own_domain() -> None:
    ring = ring_of(members(4), vnodes_per_weight=VNODES)
    for chunk_id in CHUNKS[:100]:
        assert len(ring.preference_list(chunk_id)) == 3


def test_empty_ring_places_nothing() -> None:
    ring = ring_of([])
    assert ring.preference_list(7) == ()
    assert ring.write_targets(7) == ()
    assert ring.read_order(7) == []
    assert list(ring.walk(7)) == []


def test_bulk_arcs_agree_with_single_lookups() -> None:
    ring = ring_of(members(5), vnodes_per_weight=VNODES)
    for chunk_id, arc in zip(CHUNKS, ring.arcs_of(CHUNKS), strict=True):
        assert ring.homes_for_arc(arc) == ring.preference_list(chunk_id)


def test_summary_matches_per_chunk_plan() -> None:
    before = ring_of(members(5), vnodes_per_weight=VNODES)
    after = ring_of([*members(5), Member(9, "10.0.0.9:7000", weight=2)], vnodes_per_weight=VNODES)
    plan = plan_moves(before, after, CHUNKS)
    summary = summarize_moves(before, after, CHUNKS)
    assert plan, "a new member must take some chunks"
    assert summary.copies_moved == sum(len(move.gained) for move in plan)
    assert sum(summary.dropped_by.values()) == sum(len(move.dropped) for move in plan)
    assert set(summary.gained_by) == {9}
    assert summary.copies_before == summary.copies_after == 3 * len(CHUNKS)


def test_cache_builds_once_per_epoch_and_never_confuses_configs() -> None:
    cache = RingCache(capacity=2)
    first = RingConfig(epoch=1, members=tuple(members(3)), vnodes_per_weight=VNODES)
    assert cache.get(first) is cache.get(first)
    impostor = RingConfig(epoch=1, members=tuple(members(4)), vnodes_per_weight=VNODES)
    assert cache.get(impostor).config == impostor
    for epoch in (2, 3, 4):
        cache.get(RingConfig(epoch=epoch, members=tuple(members(3)), vnodes_per_weight=VNODES))
    rebuilt = cache.get(first)
    assert rebuilt.config == first


@pytest.mark.parametrize(
    "settings, members_given, message",
    [
        ({"replicas": 0}, members(3), "replicas"),
        ({"min_replicas": 4}, members(3), "min_replicas"),
        ({"vnodes_per_weight": 0}, members(3), "vnodes_per_weight"),
        ({}, [*members(2), Member(2, "dup:1")], "twice"),
        ({}, [Member(1, "a:1", weight=-1)], "weight"),
        ({"vnodes_per_weight": 10**6}, members(2), "virtual nodes"),
    ],
)
def test_bad_ring_data_is_refused(
    settings: dict[str, int], members_given: list[Member], message: str
) -> None:
    with pytest.raises(RingConfigError, match=message):
        RingConfig(epoch=1, members=tuple(members_given), **settings)


def test_weight_zero_member_holds_nothing() -> None:
    ring_members = [*members(4), Member(8, "10.0.0.8:7000", weight=0)]
    ring = ring_of(ring_members, vnodes_per_weight=VNODES)
    assert all(8 not in ids(ring.read_order(c)) for c in CHUNKS)
    assert Ring(ring.config).member(8).weight == 0


def test_wire_round_trip_and_invalid_state() -> None:
    from dfs.placement.wire import config_from_proto, config_to_proto
    from dfs.rpc import common_pb2

    config = RingConfig(
        epoch=5,
        members=(
            Member(2, "b:1", weight=2, domain="r1", state=MemberState.DRAINING),
            Member(1, "a:1", domain="r2", state=MemberState.DOWN),
        ),
        replicas=2,
        min_replicas=1,
        vnodes_per_weight=VNODES,
    )
    wire = config_to_proto(config)
    assert [m.id for m in wire.members] == [1, 2]
    back = config_from_proto(wire)
    assert sorted(back.members, key=lambda m: m.id) == sorted(config.members, key=lambda m: m.id)
    assert (back.epoch, back.replicas, back.min_replicas) == (5, 2, 1)
    wire.members[0].state = common_pb2.MEMBER_STATE_UNSPECIFIED
    with pytest.raises(ValueError):
        config_from_proto(wire)


def test_summary_from_an_empty_ring_gains_every_copy() -> None:
    summary = summarize_moves(ring_of([]), ring_of(members(3), vnodes_per_weight=VNODES), CHUNKS)
    assert (summary.copies_before, summary.copies_after) == (0, 3 * len(CHUNKS))
    assert summary.copies_moved == 3 * len(CHUNKS)
    assert summary.moved_fraction == 0.0  # nothing was placed before
    assert summary.gained_by == {1: len(CHUNKS), 2: len(CHUNKS), 3: len(CHUNKS)}
