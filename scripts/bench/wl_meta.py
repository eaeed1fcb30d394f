"""Namespace workloads: metadata churn and the listing of one big directory.

Each churn phase is a sequential loop of one syscall kind, so its rate is the
inverse of that operation's latency on the target.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from context import Bench, Deadline, rate
from figures import Figure

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL
# `ls -l` in the C locale: no collation cost that differs between machines.
LS_ENV = {**os.environ, "LC_ALL": "C"}


def _loop(name: str, count: int, op: Callable[[int], object], cap_s: float) -> Figure:
    """Time `op(0) ... op(count - 1)`, stopping at the cap."""
    deadline = Deadline(cap_s)
    done = 0
    started = time.perf_counter()
    for i in range(count):
        if deadline.expired():
            break
        op(i)
        done += 1
    return rate(name, done, count, time.perf_counter() - started)


def churn(bench: Bench) -> Iterator[Figure]:
    n, cap = bench.sizes.churn_ops, bench.sizes.phase_cap_s
    dirs, a, b = bench.root / "dirs", bench.root / "a", bench.root / "b"
    for directory in (dirs, a, b):
        directory.mkdir()
    bench.progress(f"churn: {n} of each: mkdir, rmdir, create, rename x2, unlink")
    yield _loop("mkdir", n, lambda i: os.mkdir(dirs / f"d{i}"), cap)
    made = _count(dirs)
    yield _loop("rmdir", made, lambda i: os.rmdir(dirs / f"d{i}"), cap)
    yield _loop("create_empty", n, lambda i: _create_empty(a / f"f{i}"), cap)
    made = _count(a)
    yield _loop("rename_same_dir", made, lambda i: os.rename(a / f"f{i}", a / f"g{i}"), cap)
    yield _loop("rename_cross_dir", made, lambda i: os.rename(a / f"g{i}", b / f"g{i}"), cap)
    moved = _count(b)
    yield _loop("unlink", moved, lambda i: os.unlink(b / f"g{i}"), cap)


def _create_empty(path: Path) -> None:
    os.close(os.open(path, CREATE_FLAGS, 0o644))


def _count(directory: Path) -> int:
    return len(os.listdir(directory))


def readdir(bench: Bench) -> Iterator[Figure]:
    n, cap = bench.sizes.readdir_entries, bench.sizes.phase_cap_s
    big = bench.root / "big"
    big.mkdir()
    bench.progress(f"readdir: filling one directory with {n} entries")
    filled = _fill(big, n, cap)
    # A slow target lists the entries it managed to create, and says so.
    note = "" if filled == n else f"capped: listed {filled} of {n} entries"

    bench.drop_caches()
    bench.progress("readdir: listing, cold then warm")
    yield _listing("readdir_cold", big, filled, note)
    yield _listing("readdir_warm", big, filled, note)

    bench.drop_caches()
    bench.progress("readdir: ls -l, cold")
    started = time.perf_counter()
    subprocess.run(
        ["ls", "-l", "--color=never", str(big)],
        check=True, stdout=subprocess.DEVNULL, env=LS_ENV, timeout=cap,
    )
    listed = rate("ls_l", filled, filled, time.perf_counter() - started)
    yield Figure(listed.name, listed.value, note)


def _fill(directory: Path, count: int, cap_s: float) -> int:
    """Create up to `count` empty entries before the cap; returns how many."""
    deadline = Deadline(cap_s)
    for i in range(count):
        if deadline.expired():
            return i
        _create_empty(directory / f"entry-{i:06d}")
    return count


def _listing(name: str, directory: Path, expected: int, note: str) -> Figure:
    started = time.perf_counter()
    names = os.listdir(directory)
    elapsed = time.perf_counter() - started
    if len(names) != expected:
        raise OSError(f"{name}: listed {len(names)} entries, expected {expected}")
    return Figure(name, rate(name, expected, expected, elapsed).value, note)
