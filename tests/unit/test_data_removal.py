"""When the metadata leader lets a data server leave the ring: a draining one once its
pass at the current epoch left it no live chunk; an out one once every up server (and
the out one, if it still runs) has passed at the current epoch with nothing
under-replicated; an up one never. Heartbeat figures are fed in directly."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from dfs.admin.data_admin import DataAdmin
from dfs.meta.duties import DataServerSeen
from dfs.meta.ringdata import RingData
from dfs.meta.types import MemberState


def leader_with(states: dict[int, MemberState]) -> tuple[DataAdmin, RingData, dict[int, Any]]:
    ring = RingData()
    for member_id, state in states.items():
        ring.register(member_id, f"127.0.0.1:{7000 + member_id}", 1, "")
        ring.set_state(member_id, state)
    heard: dict[int, DataServerSeen] = {}
    proposer: Any = SimpleNamespace(state=SimpleNamespace(
        namespace=SimpleNamespace(state=SimpleNamespace(ring=ring))))
    duties: Any = SimpleNamespace(data_servers=heard)
    return DataAdmin(proposer, duties), ring, heard


def seen(epoch: int, live_held: int = 0, under: int = 0, ago_s: float = 0.0) -> DataServerSeen:
    return DataServerSeen(last_heard=time.monotonic() - ago_s, pass_epoch=epoch,
                          live_held=live_held, under_replicated=under)


UP = MemberState.UP


def test_an_up_server_must_leave_first() -> None:
    admin, _, _ = leader_with({1: UP, 2: UP, 3: UP, 4: UP})
    assert "drain it" in admin.removal_refusal(4)


def test_a_draining_server_is_removable_once_its_pass_left_nothing_live() -> None:
    admin, ring, heard = leader_with({1: UP, 2: UP, 3: UP, 4: MemberState.DRAINING})
    assert "not heartbeating" in admin.removal_refusal(4)
    heard[4] = seen(ring.epoch - 1)
    assert "epoch" in admin.removal_refusal(4)
    heard[4] = seen(ring.epoch, live_held=3)
    assert "3 live chunks" in admin.removal_refusal(4)
    heard[4] = seen(ring.epoch)
    assert admin.removal_refusal(4) == ""


def test_an_out_server_is_removable_once_repair_finished_everywhere() -> None:
    admin, ring, heard = leader_with({1: UP, 2: UP, 3: UP, 4: MemberState.OUT})
    heard.update({1: seen(ring.epoch), 2: seen(ring.epoch), 3: seen(ring.epoch - 1)})
    assert "data server 3 has not finished" in admin.removal_refusal(4)
    heard[3] = seen(ring.epoch, under=2)
    assert "2 chunks under-replicated" in admin.removal_refusal(4)
    heard[3] = seen(ring.epoch)
    heard[4] = seen(ring.epoch - 1)  # still running, its own pass not done
    assert "still runs" in admin.removal_refusal(4)
    heard[4] = seen(ring.epoch - 1, ago_s=60)  # dead: what the others say decides
    assert admin.removal_refusal(4) == ""
