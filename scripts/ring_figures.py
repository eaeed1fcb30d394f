#!/usr/bin/env python3
"""Print the ring's figures: the same table the ring tests print and bound.

    scripts/ring_figures.py            # 20 seeds at the default vnodes per weight
    scripts/ring_figures.py --sweep    # worst figures and build cost per vnode count
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfs.placement.figures import (
    CHUNKS,
    REPLICAS,
    SERVERS,
    TABLE_HEADER,
    SeedFigures,
    seed_figures,
    server_ids,
    table_row,
)
from dfs.placement.members import DEFAULT_VNODES_PER_WEIGHT, Member, RingConfig
from dfs.placement.ring import Ring

SEEDS = range(20)
SWEEP_VNODES = (32, 64, 128, 256, 512)
BIG_CLUSTER = 1000


def print_table(vnodes_per_weight: int) -> list[SeedFigures]:
    print(
        f"{SERVERS} servers, R = {REPLICAS}, {CHUNKS} chunk ids, "
        f"{vnodes_per_weight} vnodes per weight unit"
    )
    print(TABLE_HEADER)
    rows = [seed_figures(seed, vnodes_per_weight) for seed in SEEDS]
    for row in rows:
        print(table_row(row))
    print(
        f"worst: max/mean {max(r.balance for r in rows):.4f}  "
        f"add moved {max(r.add_moved for r in rows):.4f} (bound {1.2 / 11:.4f})  "
        f"weight err {max(r.weight_error for r in rows):.4f}"
    )
    return rows


def build_seconds(server_count: int, vnodes_per_weight: int) -> float:
    members = tuple(Member(i, f"data-{i}:7000") for i in server_ids(0, server_count))
    started = time.perf_counter()
    Ring(RingConfig(epoch=1, members=members, vnodes_per_weight=vnodes_per_weight))
    return time.perf_counter() - started


def print_sweep() -> None:
    print(
        f"{'vnodes':>6} {'max/mean':>8} {'add moved':>9} {'weight err':>10} "
        f"{'build 10':>9} {f'build {BIG_CLUSTER}':>10}"
    )
    for vnodes in SWEEP_VNODES:
        rows = [seed_figures(seed, vnodes) for seed in SEEDS]
        print(
            f"{vnodes:>6} {max(r.balance for r in rows):>8.4f} "
            f"{max(r.add_moved for r in rows):>9.4f} {max(r.weight_error for r in rows):>10.4f} "
            f"{build_seconds(SERVERS, vnodes) * 1000:>7.1f}ms "
            f"{build_seconds(BIG_CLUSTER, vnodes) * 1000:>8.0f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="compare vnode counts")
    parser.add_argument("--vnodes", type=int, default=DEFAULT_VNODES_PER_WEIGHT)
    args = parser.parse_args()
    if args.sweep:
        print_sweep()
    else:
        print_table(args.vnodes)


if __name__ == "__main__":
    main()
