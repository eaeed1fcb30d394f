"""The deterministic simulation: thousands of seeded runs of 3 and 5 replicas with
crashes, partitions, transfers and membership changes; every invariant checked."""

from __future__ import annotations

import pytest

from tests.sim.seeds import DEFAULT_SEEDS, LONG_SEEDS, failing
from tests.sim.simulation import run_seed

CHUNK = 100


def _report(results: list) -> str:  # type: ignore[type-arg]
    return "; ".join(f"seed {r.seed}: {r.failure}" for r in results[:5])


@pytest.mark.parametrize("start", range(0, DEFAULT_SEEDS, CHUNK))
def test_default_seeds_hold_every_invariant(start: int) -> None:
    bad = failing(range(start, start + CHUNK))
    assert not bad, _report(bad)


@pytest.mark.long
@pytest.mark.timeout(600)
@pytest.mark.parametrize("start", range(DEFAULT_SEEDS, LONG_SEEDS, 1000))
def test_long_seeds_hold_every_invariant(start: int) -> None:
    bad = failing(range(start, start + 1000))
    assert not bad, _report(bad)


def test_a_seed_replays_exactly() -> None:
    first = run_seed(12345, trace=True)
    second = run_seed(12345, trace=True)
    assert first.trace == second.trace
    assert len(first.trace) > 100


def test_runs_do_real_work() -> None:
    """A guard against a simulator that checks nothing: runs choose many slots, and
    both group sizes are exercised."""
    results = [run_seed(s) for s in range(10)]
    assert {r.replicas for r in results} == {3, 5}
    assert all(r.chosen_slots >= 10 for r in results)
