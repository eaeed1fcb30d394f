#!/usr/bin/env python3
"""Run the deterministic Paxos simulation over many seeds, or replay one with a trace.

    scripts/sim.py --seeds 300 --start 900000     # prints seeds/s and failing seeds
    scripts/sim.py --seed 900017 --trace          # replays one seed, event by event
    scripts/sim.py --seeds 500 --bug promise-after-restart   # a planted bug must fail
    scripts/sim.py --failover 200                 # leader crash -> next commit, measured

Exit status: 0 when every seed held every invariant, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfs.paxos.planted import PlantedBug
from tests.sim.cluster import SimParams
from tests.sim.simulation import Simulation, run_seed


def failover_times(trials: int, replicas: int) -> list[float]:
    """Simulated seconds from a leader's crash to the next chosen slot, per trial."""
    times = []
    for seed in range(trials):
        params = SimParams(replicas=replicas, clients=0, fault_time=0.0, drop=0.0)
        sim = Simulation(seed, params)
        for node in sim.nodes.values():
            node.start()
        sim.sched.run_until(0.3, lambda: False)
        leader = sim.leader()
        if leader is None:
            continue
        chosen_before = len(sim.invariants.chosen)
        crashed_at = sim.sched.time
        sim.crash(leader.id)
        chosen = sim.invariants.chosen
        sim.sched.run_until(
            crashed_at + 2.0,
            lambda chosen=chosen, before=chosen_before: len(chosen) > before,
        )
        times.append(sim.sched.time - crashed_at)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--trace", action="store_true", help="print the event trace")
    parser.add_argument(
        "--bug", choices=[b.value for b in PlantedBug], help="turn on a planted bug"
    )
    parser.add_argument(
        "--failover", type=int, metavar="TRIALS", help="measure leader crash to next commit"
    )
    args = parser.parse_args()
    planted = frozenset({PlantedBug(args.bug)}) if args.bug else frozenset()

    if args.failover:
        low, high = SimParams().election
        for replicas in (3, 5):
            times = sorted(failover_times(args.failover, replicas))
            median, worst = times[len(times) // 2], times[-1]
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(
                f"{replicas} replicas, {len(times)} crashes: leader crash -> next commit "
                f"median {median * 1000:.0f}ms, p99 {p99 * 1000:.0f}ms, max {worst * 1000:.0f}ms "
                f"(election timeout {low * 1000:.0f}-{high * 1000:.0f}ms)"
            )
        return 0

    if args.seed is not None:
        result = run_seed(args.seed, planted, trace=args.trace)
        if args.trace:
            print("\n".join(result.trace))
        status = "ok" if result.ok else f"FAILED: {result.failure}"
        print(
            f"seed {result.seed}: {result.replicas} replicas, {result.chosen_slots} slots "
            f"chosen, {result.events} events, {result.sim_time:.3f}s simulated: {status}"
        )
        return 0 if result.ok else 1

    failures = []
    started = time.perf_counter()
    for seed in range(args.start, args.start + args.seeds):
        result = run_seed(seed, planted)
        if not result.ok:
            failures.append(result)
            print(f"seed {seed} FAILED: {result.failure}", flush=True)
    elapsed = time.perf_counter() - started
    print(
        f"{args.seeds} seeds from {args.start} in {elapsed:.1f}s: "
        f"{args.seeds / elapsed:.1f} seeds/s, {len(failures)} failing"
    )
    if failures:
        print("replay with: scripts/sim.py --trace --seed " + str(failures[0].seed))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
