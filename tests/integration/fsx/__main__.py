"""Replay or run one exerciser sequence:
`python -m tests.integration.fsx --seed S --ops N DFS_DIR LOCAL_DIR`.

Both directories should be empty (a fresh subdirectory of a dfs mount and a local
temporary directory). Prints the divergence and exits 1, or exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.fsx.exerciser import FULL_EVERY, Divergence, exercise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.fsx")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ops", type=int, required=True)
    parser.add_argument("--full-every", type=int, default=FULL_EVERY,
                        help="compare the whole trees every this many operations")
    parser.add_argument("--verbose", action="store_true", help="print every operation")
    parser.add_argument("--progress", type=int, default=0, metavar="N",
                        help="print a line every N operations")
    parser.add_argument("under_test", type=Path)
    parser.add_argument("reference", type=Path)
    args = parser.parse_args(argv)
    for directory in (args.under_test, args.reference):
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            parser.error(f"{directory} is not empty")
    try:
        exercise(args.seed, args.ops, args.under_test, args.reference, args.full_every,
                 log=_logger(args.seed, args.verbose, args.progress))
    except Divergence as divergence:
        print(divergence, file=sys.stderr)
        return 1
    print(f"fsx seed {args.seed}: {args.ops} operations, no divergence")
    return 0


def _logger(seed: int, verbose: bool, every: int) -> Callable[[str], None] | None:
    """Prints each operation line (verbose), or every `every`-th as progress."""
    if verbose:
        return print
    if not every:
        return None

    def progress(line: str) -> None:
        step = int(line.split(":", 1)[0])
        if step and step % every == 0:
            print(f"fsx seed {seed}: {step} operations", flush=True)

    return progress


if __name__ == "__main__":
    sys.exit(main())
