"""The fault suite's runs: a cluster in network namespaces under a nemesis, its
recorded histories checked. The short run is part of `make test`; each planted bug
must make a run fail (long: `make test-long`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dfs.paxos.planted import PlantedBug
from tests.faults.netns import LEDGER_DIR, cleanup_leftovers
from tests.faults.run import run_faults

pytestmark = pytest.mark.fuse

SHORT_FAULT_TIME_S = 60.0
SHORT_MIN_FAULTS = 50


@pytest.fixture(autouse=True)
def needs_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [tool for tool in ("ip", "nft", "fusermount3") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {missing}: `make test` installs iproute2, nftables, fuse3")


def recorded_leftovers() -> list[str]:
    """Ledgers still on disk after a run ended (a run removes all it made)."""
    return [p.name for p in LEDGER_DIR.glob("dfsf*.json")] if LEDGER_DIR.exists() else []


@pytest.mark.timeout(420)
def test_short_fault_run_loses_no_acknowledged_write(tmp_path: Path) -> None:
    result = run_faults(tmp_path, seed=1, fault_time_s=SHORT_FAULT_TIME_S,
                        hold_s=(0.2, 0.6), min_faults=SHORT_MIN_FAULTS)
    print(result.summary())
    assert sum(result.faults.values()) >= SHORT_MIN_FAULTS
    assert result.faults["power-outage"] >= 1  # what catches chunk-ack-before-fsync
    assert result.kv_answered > 0 and result.files_acked > 0 and result.shared_reads > 0
    assert not result.lost, result.lost
    assert not result.violations, result.violations
    assert not recorded_leftovers()
    assert cleanup_leftovers(include_running=True) == []


# Faults that expose each plant, held long enough for clients to move to a new leader.
PLANTED_RUNS = {
    PlantedBug.LEASE_READ_WITHOUT_LEASE: ["isolate-meta-leader"],
    PlantedBug.APPLY_RETRY_TWICE: ["replies-lost", "kill-meta-leader"],
    PlantedBug.CHUNK_ACK_BEFORE_FSYNC: ["power-outage"],
}


@pytest.mark.long
@pytest.mark.timeout(600)
@pytest.mark.parametrize("bug", list(PLANTED_RUNS), ids=lambda b: b.value)
def test_planted_bug_is_caught(tmp_path: Path, bug: PlantedBug) -> None:
    result = run_faults(tmp_path, seed=2, fault_time_s=90, planted=bug.value,
                        kinds=PLANTED_RUNS[bug], hold_s=(3.0, 5.0))
    print(result.summary())
    assert result.violations or result.lost, f"{bug.value} went unnoticed"


@pytest.mark.long
@pytest.mark.timeout(600)
def test_power_faults_lose_nothing_without_a_planted_bug(tmp_path: Path) -> None:
    """The run that catches chunk-ack-before-fsync, with every power and disk fault
    and no bug: every acknowledged byte survives (so the catch is the bug's)."""
    result = run_faults(tmp_path, seed=2, fault_time_s=90,
                        kinds=["power-outage", "power-loss-data", "power-loss-meta",
                               "data-disk-full"], hold_s=(3.0, 5.0))
    print(result.summary())
    assert result.faults["power-outage"] >= 1 and result.files_acked > 0
    assert not result.lost, result.lost
    assert not result.violations, result.violations
