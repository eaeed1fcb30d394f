"""`ring plan` arithmetic: the proposed ring for each change, and the copies and bytes
that change homes, checked against a direct count over the preference lists."""

from __future__ import annotations

import pytest

from dfs.admin.ringplan import PlanError, price_plan, proposed_config
from dfs.placement.members import Member, MemberState, RingConfig
from dfs.placement.ring import Ring
from dfs.rpc import admin_pb2

CURRENT = RingConfig(7, tuple(Member(i, f"127.0.0.1:{7000 + i}") for i in range(1, 5)))
LENGTHS = {chunk_id: 1000 + chunk_id % 977 for chunk_id in range(10_000, 12_000)}


def request(action: str, member_id: int, addr: str = "", weight: int = 0
            ) -> admin_pb2.RingPlanRequest:
    return admin_pb2.RingPlanRequest(action=action, id=member_id, addr=addr, weight=weight)


def test_each_change_gives_the_ring_it_names() -> None:
    added = proposed_config(CURRENT, request("add", 5, "127.0.0.1:7005", 2))
    assert added.epoch == 8 and added.member(5).weight == 2
    assert proposed_config(CURRENT, request("drain", 2)).member(2).state is MemberState.DRAINING
    assert proposed_config(CURRENT, request("out", 2)).member(2).state is MemberState.OUT
    assert proposed_config(CURRENT, request("weight", 3, weight=4)).member(3).weight == 4
    assert [m.id for m in proposed_config(CURRENT, request("remove", 4)).members] == [1, 2, 3]


@pytest.mark.parametrize("bad", [
    request("add", 1, "127.0.0.1:1"), request("add", 9, "nohost"), request("remove", 9),
    request("weight", 1, weight=0), request("explode", 1),
])
def test_changes_that_make_no_sense_are_refused(bad: admin_pb2.RingPlanRequest) -> None:
    with pytest.raises(PlanError):
        proposed_config(CURRENT, bad)


def test_the_price_matches_a_direct_count() -> None:
    proposed = proposed_config(CURRENT, request("add", 5, "127.0.0.1:7005", 1))
    plan = price_plan(CURRENT, proposed, LENGTHS)
    old, new = Ring(CURRENT), Ring(proposed)
    moved_copies = moved_bytes = 0
    for chunk_id, length in LENGTHS.items():
        before = {m.id for m in old.preference_list(chunk_id)}
        gained = {m.id for m in new.preference_list(chunk_id)} - before
        assert gained <= {5}  # a new server only takes copies, nobody else gains
        moved_copies += len(gained)
        moved_bytes += len(gained) * length
    assert (plan.copies_moved, plan.bytes_moved) == (moved_copies, moved_bytes)
    assert plan.copies_before == 3 * len(LENGTHS)
    assert plan.bytes_total == sum(LENGTHS.values())
    assert 0.15 < plan.copies_moved / plan.copies_before < 0.35  # about 1/N, N = 5
    assert [m.id for m in plan.members if m.gained] == [5]
