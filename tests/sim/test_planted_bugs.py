"""Each planted bug (a test-only switch that breaks one rule) must be caught by the
simulator within the default seeds: proof that the checks can fail."""

from __future__ import annotations

import pytest

from dfs.paxos.planted import PlantedBug
from tests.sim.seeds import DEFAULT_SEEDS, first_failure

# What each bug must visibly break: the failure names that property.
BROKEN_PROPERTY = {
    PlantedBug.ACK_BEFORE_DURABLE: "two values chosen",
    PlantedBug.ACCEPT_LOWER_BALLOT: "two values chosen",
    PlantedBug.PROMISE_AFTER_RESTART: "still holds a lease",
    PlantedBug.APPLY_RETRY_TWICE: "applied twice",
}
# Planted in a server's KV service or a data server's chunk store, outside the core the
# simulator runs: the fault suite (tests/faults/test_fault_run.py) shows them caught.
SERVER_ONLY = {PlantedBug.LEASE_READ_WITHOUT_LEASE, PlantedBug.CHUNK_ACK_BEFORE_FSYNC}


def test_every_planted_bug_has_a_checker() -> None:
    assert set(BROKEN_PROPERTY) | SERVER_ONLY == set(PlantedBug)


@pytest.mark.parametrize("bug", list(BROKEN_PROPERTY), ids=lambda b: b.value)
def test_planted_bug_is_caught(bug: PlantedBug) -> None:
    found = first_failure(range(DEFAULT_SEEDS), frozenset({bug}))
    assert found is not None, f"{bug.value} survived {DEFAULT_SEEDS} seeds"
    assert found.failure is not None
    assert BROKEN_PROPERTY[bug] in found.failure, found.failure
