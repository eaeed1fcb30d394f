#!/usr/bin/env python3
"""File-level benchmark of any directory: the same workloads for dfs, a local disk, any FS.

Runs the workloads of issue 20 in a fresh subdirectory of DIR (removed at the end),
dropping caches before every read phase; prints a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from caches import CacheDropper
from context import Bench
from figures import SPEC_BY_NAME, WORKLOAD_NAMES, Figure
from sizes import SIZES, Sizes
from table import number, render
from workloads import WORKLOADS

EXIT_OK = 0
EXIT_WORKLOAD_FAILED = 1
EXIT_USAGE = 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark file-level workloads on DIR (any file system). "
        "Needs root to drop the kernel page cache before read phases.",
    )
    parser.add_argument("dir", type=Path, help="an existing directory on the file system to test")
    parser.add_argument("--sizes", choices=list(SIZES), default="full",
                        help="workload sizes (default full, issue 20's)")
    parser.add_argument("--quick", action="store_true", help="--sizes quick: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--only", metavar="NAME,...", default=",".join(WORKLOAD_NAMES),
        help=f"workloads to run (default all: {','.join(WORKLOAD_NAMES)})",
    )
    parser.add_argument(
        "--drop-cache-cmd", metavar="CMD",
        help="shell command that empties the file system's own client cache (a remount, "
        "a control file); runs before the kernel's caches are dropped, before every read phase",
    )
    parser.add_argument(
        "--no-drop", action="store_true", help="do not drop the kernel page cache (not root)"
    )
    parser.add_argument("--label", default="", help="prefix of progress lines")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(WORKLOAD_NAMES))
    if unknown or not chosen:
        parser.error(f"--only: unknown workload(s) {unknown}; choose from {WORKLOAD_NAMES}")
    args.only = [name for name in WORKLOAD_NAMES if name in chosen]
    if args.quick:
        args.sizes = "quick"
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a directory")
    return args


def progress_printer(label: str) -> Callable[[str], None]:
    started = time.monotonic()
    prefix = f"[{label}] " if label else ""

    def show(message: str) -> None:
        print(f"{prefix}{time.monotonic() - started:6.1f}s {message}", file=sys.stderr, flush=True)

    return show


@dataclass
class RunResult:
    """What one fs.py run measured, failed at, and how it dropped caches."""

    directory: Path
    size_set: str
    workloads: list[str]
    sizes: Sizes
    figures: dict[str, Figure] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    caches: CacheDropper | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "dir": str(self.directory),
            "quick": self.size_set == "quick",
            "size_set": self.size_set,
            "workloads": self.workloads,
            "sizes": asdict(self.sizes),
            "figures": {
                f.name: {"value": f.value, "unit": SPEC_BY_NAME[f.name].unit, "note": f.note}
                for f in self.figures.values()
            },
            "errors": self.errors,
            "caches": self.caches.describe() if self.caches else None,
            "elapsed_s": self.elapsed_s,
        }


def run(args: argparse.Namespace) -> RunResult:
    """Run the chosen workloads, each in its own directory, removed afterwards."""
    result = RunResult(args.dir, args.sizes, args.only, SIZES[args.sizes])
    result.caches = CacheDropper(args.drop_cache_cmd, kernel=not args.no_drop)
    show = progress_printer(args.label)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="fsbench-", dir=args.dir))
    try:
        for name in args.only:
            root = scratch / name
            root.mkdir()
            bench = Bench(root=root, sizes=result.sizes, drop_caches=result.caches,
                          progress=show)
            try:
                for figure in WORKLOADS[name](bench):
                    result.figures[figure.name] = figure
            except Exception as err:  # one failing workload must not hide the others
                result.errors[name] = f"{type(err).__name__}: {err}"
                show(f"{name}: FAILED: {result.errors[name]}")
                traceback.print_exc(file=sys.stderr)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.elapsed_s = time.monotonic() - started
    return result


def human_table(result: RunResult) -> str:
    rows = [
        [f.name, number(f.value), SPEC_BY_NAME[f.name].unit, SPEC_BY_NAME[f.name].meaning, f.note]
        for f in result.figures.values()
    ]
    lines = [f"fs.py on {result.directory} ({result.size_set} sizes)", ""]
    lines.append(render(["figure", "value", "unit", "what", "note"], rows, "lrlll"))
    lines += [f"FAILED {name}: {message}" for name, message in result.errors.items()]
    if result.caches is not None and result.caches.kernel_problem:
        lines.append(f"note: kernel caches not dropped ({result.caches.kernel_problem})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result.to_json(), indent=2) if args.json else human_table(result))
    return EXIT_WORKLOAD_FAILED if result.errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
