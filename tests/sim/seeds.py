"""Seed ranges shared by the simulation tests and scripts/sim.py."""

from __future__ import annotations

from collections.abc import Iterable

from dfs.paxos.planted import PlantedBug
from tests.sim.simulation import SimResult, run_seed

DEFAULT_SEEDS = 2000  # `make test`: even seeds run 3 replicas, odd seeds 5
LONG_SEEDS = 20000  # `make test-long`


def failing(seeds: Iterable[int], planted: frozenset[PlantedBug] = frozenset()) -> list[SimResult]:
    return [r for r in (run_seed(s, planted) for s in seeds) if not r.ok]


def first_failure(seeds: Iterable[int], planted: frozenset[PlantedBug]) -> SimResult | None:
    for seed in seeds:
        result = run_seed(seed, planted)
        if not result.ok:
            return result
    return None
