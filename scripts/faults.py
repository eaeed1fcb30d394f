#!/usr/bin/env python3
"""The fault suite, long form: a cluster in network namespaces, recorded workloads,
a nemesis, then the checkers. Needs root (namespaces, nftables) and /dev/fuse.

    scripts/faults.py --duration 30m --seed 7 --report run.md
    scripts/faults.py --duration 2m --bug lease-read-without-lease   # must fail
    scripts/faults.py --duration 90 --bug chunk-ack-before-fsync --faults power-outage
    scripts/faults.py --cleanup        # remove what a killed run left behind
    scripts/faults.py --failover 20    # failover figures: 20 of each fault (see below)

Exit 0: no acknowledged write lost and no violation; 1: something was; 2: usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfs.paxos.planted import PlantedBug
from tests.faults.failover import measure_failover
from tests.faults.nemesis import FAULTS
from tests.faults.netns import cleanup_leftovers
from tests.faults.run import RunResult, run_faults


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def report(result: RunResult, args: argparse.Namespace) -> str:
    ordered = sorted(result.failovers_s)
    lines = [
        f"# Fault run, seed {result.seed}",
        "",
        f"- started: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"fault time {args.duration}, planted bug: {args.bug or 'none'}",
        f"- {result.summary()}",
        "",
        "| fault | injected |",
        "|---|---|",
        *(f"| {kind} | {n} |" for kind, n in sorted(result.faults.items())),
        "",
        f"- failover samples (s): {', '.join(f'{s:.2f}' for s in ordered)}",
        f"- lost: {result.lost or 'none'}",
        f"- violations: {result.violations or 'none'}",
    ]
    return "\n".join(lines) + "\n"


def failover(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    base = args.dir or Path(tempfile.mkdtemp(prefix="dfs-failover-"))
    wanted = set(args.failover_faults.split(","))
    count = {kind: args.failover if kind in wanted else 0 for kind in ("kill", "pause", "data")}
    result = measure_failover(base, count["kill"], count["pause"], count["data"], seed=args.seed,
                              progress=logging.getLogger("failover").info)
    text = f"{result.report()}\n\n{result.samples()}\n"
    print(text + "".join(f"  {line}\n" for line in result.lost + result.violations), end="")
    if args.report:
        args.report.write_text(text)
    return 0 if result.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=duration, default=120.0,
                        help="fault time: 90, 90s, 30m, 1h")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bug", choices=[b.value for b in PlantedBug],
                        help="plant a bug in the servers (the run must fail; "
                        "chunk-ack-before-fsync needs power outages among the faults)")
    parser.add_argument("--faults", help="comma-separated fault kinds (default: all): "
                        + ", ".join(FAULTS))
    parser.add_argument("--min-faults", type=int, default=0)
    parser.add_argument("--hold", default="0.2,0.8", metavar="MIN,MAX",
                        help="seconds each fault lasts before its heal")
    parser.add_argument("--report", type=Path, help="write a Markdown report here")
    parser.add_argument("--dir", type=Path, help="keep logs here (default: a temp dir)")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove namespaces, links, mounts and processes of dead runs")
    parser.add_argument("--failover", type=int, metavar="N",
                        help="instead of a fault run, time failover: N leader kills, N "
                        "leader pauses and N data-server kills (tests/faults/failover.py)")
    parser.add_argument("--failover-faults", default="kill,pause,data",
                        help="which of kill,pause,data --failover makes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cleanup:
        removed = cleanup_leftovers()
        print("\n".join(removed) if removed else "nothing left behind")
        return 0
    if args.failover:
        return failover(args)
    kinds = args.faults.split(",") if args.faults else None
    if kinds and set(kinds) - set(FAULTS):
        print(f"faults.py: unknown fault kinds {sorted(set(kinds) - set(FAULTS))}",
              file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the run's cleanup removes what it made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    base = args.dir or Path(tempfile.mkdtemp(prefix="dfs-faults-"))
    low, high = (float(x) for x in args.hold.split(","))
    result = run_faults(base, args.seed, args.duration, args.bug or "", kinds, (low, high),
                        min_faults=args.min_faults,
                        progress=logging.getLogger("faults").info)
    print(result.summary())
    for line in result.lost + result.violations:
        print(f"  {line}")
    if args.report:
        args.report.write_text(report(result, args))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
