"""Many-file workloads: 4 KiB files spread over directories, and parallel creators.

A create is timed as done when its syscalls return (open, write, close), as an
application sees it; no extra sync is added.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from context import Bench, Deadline, rate
from figures import Figure

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL
# A child that never sees the start signal gives up instead of hanging the run.
PARALLEL_START_TIMEOUT_S = 30.0

PathOp = Callable[[Path], object]


def small_file_paths(root: Path, files: int, dirs: int) -> list[Path]:
    return [root / f"d{i % dirs:03d}" / f"f{i:06d}" for i in range(files)]


def small_files(bench: Bench) -> Iterator[Figure]:
    sizes = bench.sizes
    paths = small_file_paths(bench.root, sizes.small_files, sizes.small_dirs)
    payload = b"s" * sizes.small_file_bytes
    cap = sizes.phase_cap_s

    bench.progress(f"small: creating {len(paths)} files in {sizes.small_dirs} dirs")
    started = time.perf_counter()
    for i in range(sizes.small_dirs):
        (bench.root / f"d{i:03d}").mkdir()
    created = _timed(paths, lambda p: _create_with(p, payload), Deadline(cap))
    yield rate("small_create", created, len(paths), time.perf_counter() - started)
    paths = paths[:created]

    bench.drop_caches()
    bench.progress("small: stat, cold then warm")
    yield _phase("small_stat_cold", paths, os.stat, cap)
    yield _phase("small_stat_warm", paths, os.stat, cap)

    bench.drop_caches()
    bench.progress("small: reading every file")
    yield _phase("small_read", paths, Path.read_bytes, cap)

    bench.progress("small: deleting")
    yield _phase("small_delete", paths, os.unlink, cap)


def _create_with(path: Path, payload: bytes) -> None:
    fd = os.open(path, CREATE_FLAGS, 0o644)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


def _phase(name: str, paths: list[Path], op: PathOp, cap_s: float) -> Figure:
    started = time.perf_counter()
    done = _timed(paths, op, Deadline(cap_s))
    return rate(name, done, len(paths), time.perf_counter() - started)


def _timed(paths: list[Path], op: PathOp, deadline: Deadline) -> int:
    """Apply `op` to each path until done or the deadline; returns how many."""
    for done, path in enumerate(paths):
        if deadline.expired():
            return done
        op(path)
    return len(paths)


def parallel_creates(bench: Bench) -> Iterator[Figure]:
    sizes = bench.sizes
    procs, per_proc = sizes.parallel_procs, sizes.parallel_files_per_proc
    bench.progress(f"parallel: {procs} processes creating {per_proc} files each")
    # fork: the children need nothing but a path and a count, and start at once.
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    counts: Queue[int] = ctx.Queue()
    dirs = [bench.root / f"p{i}" for i in range(procs)]
    for directory in dirs:
        directory.mkdir()
    workers = [
        ctx.Process(target=_create_many, args=(d, per_proc, start, counts, sizes.phase_cap_s))
        for d in dirs
    ]
    for worker in workers:
        worker.start()
    try:
        started = time.perf_counter()
        start.set()
        created = sum(int(counts.get(timeout=sizes.phase_cap_s + 30)) for _ in workers)
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    yield rate("parallel_create", created, procs * per_proc, elapsed)


def _create_many(
    directory: Path,
    count: int,
    start: Event,
    counts: Queue[int],
    cap_s: float,
) -> None:
    """Child process: wait for the start signal, create `count` empty files, report."""
    if not start.wait(PARALLEL_START_TIMEOUT_S):
        counts.put(0)
        return
    deadline = Deadline(cap_s)
    done = 0
    for i in range(count):
        if deadline.expired():
            break
        os.close(os.open(directory / f"c{i:06d}", CREATE_FLAGS, 0o644))
        done += 1
    counts.put(done)
