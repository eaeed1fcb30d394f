"""Failover under leader kills, leader pauses and data-server kills (tests/faults/failover.py):
every fault is recovered from, no acknowledged write is lost, the histories check out.
The figures themselves are for docs/reliability.md (scripts/faults.py --failover N);
no test asserts a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.failover import FailoverResult, measure_failover
from tests.faults.netns import LEDGER_DIR, run
from tests.faults.test_fault_run import needs_root_and_tools

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures(needs_root_and_tools.__name__)]


def check(result: FailoverResult, kills: int, pauses: int, data_kills: int) -> None:
    print(f"{result.report()}\n{result.samples()}")
    assert [f.kind for f in result.leader].count("kill") == kills
    assert [f.kind for f in result.leader].count("pause") == pauses
    assert len(result.reader) == data_kills
    assert all(f.workload_s is not None for f in result.leader), "the workload never resumed"
    assert result.dir_ops > 0 and result.files_acked > 0 and result.reads > 0
    assert not result.lost, result.lost
    assert not result.violations, result.violations
    # Only this run's names: other fault runs may be going on beside it.
    assert not (LEDGER_DIR / f"{result.prefix}.json").exists()
    assert result.prefix not in run("ip", "netns", "list").stdout


@pytest.mark.timeout(300)
def test_every_failover_recovers(tmp_path: Path) -> None:
    check(measure_failover(tmp_path, leader_kills=1, leader_pauses=1, data_kills=1), 1, 1, 1)


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_twenty_of_each_failover_recover(tmp_path: Path) -> None:
    result = measure_failover(tmp_path, leader_kills=20, leader_pauses=20, data_kills=20, seed=3)
    check(result, 20, 20, 20)
