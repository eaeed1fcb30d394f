#!/usr/bin/env python3
"""How dfs's costs grow: concurrent client processes, mounts and data servers.

Starts local clusters with `dfs up` (3 metadata servers, D data servers, R = 3),
and measures through real FUSE mounts:

  creates    N processes (1, 4, 16) each creating small files (4 KiB, fsynced at
             close by the kernel's flush) in its own directory: files/s in total
  mounts     the same with the processes split over 1 and 2 mounts of one cluster
  data       sequential write and read of W MiB per process by 4 processes, with
             4 and 8 data servers: MB/s in total

    .venv/bin/python scripts/bench_scale.py [--quick] [--json OUT.json]

Every cluster is stopped and its directory removed at the end, also on failure.
Figures are a report (docs/benchmarks.md), never a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DFS = [sys.executable, "-m", "dfs.cli"]
SMALL = 4096
STEP_TIMEOUT_S = 600


@contextlib.contextmanager
def cluster(workdir: Path, data_servers: int, mounts: int) -> Iterator[list[Path]]:
    """A `dfs up` cluster with `mounts` mount points; yields them."""
    directory = workdir / f"cluster-d{data_servers}-m{mounts}"
    first = directory / "mnt"
    extra = [directory / f"mnt{i}" for i in range(2, mounts + 1)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*DFS, "up", "--dir", str(directory), "--data", str(data_servers)],
                       check=True, capture_output=True, timeout=STEP_TIMEOUT_S, cwd=ROOT)
        for mount in extra:
            mount.mkdir(parents=True)
            procs.append(subprocess.Popen(
                [*DFS, "mount", "--cluster", str(directory / "cluster.json"), str(mount)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))
        deadline = time.monotonic() + 60
        while not all(os.path.ismount(m) for m in extra):
            if time.monotonic() > deadline:
                raise RuntimeError("extra mount did not come up")
            time.sleep(0.2)
        yield [first, *extra]
    finally:
        for mount in extra:
            subprocess.run([*DFS, "umount", str(mount)], capture_output=True, timeout=120,
                           cwd=ROOT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([*DFS, "down", "--dir", str(directory)], capture_output=True,
                       timeout=STEP_TIMEOUT_S, cwd=ROOT)
        shutil.rmtree(directory, ignore_errors=True)


def _create_files(directory: str, count: int, start_at: float) -> float:
    """One worker: wait for the common start, create `count` files; seconds taken."""
    os.makedirs(directory, exist_ok=True)
    payload = os.urandom(SMALL)
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.perf_counter()
    for index in range(count):
        with open(os.path.join(directory, f"f{index}"), "wb") as handle:
            handle.write(payload)
    return time.perf_counter() - began


def _stream(path: str, mib: int, start_at: float, write: bool) -> float:
    block = os.urandom(1 << 20)
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.perf_counter()
    if write:
        with open(path, "wb") as handle:
            for _ in range(mib):
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    return time.perf_counter() - began


def parallel(jobs: list[tuple[object, ...]], target: object) -> list[float]:
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        return pool.starmap(target, jobs)  # type: ignore[arg-type]


def creates(mounts: list[Path], processes: int, files_each: int, tag: str) -> float:
    start_at = time.time() + 0.5
    jobs = [(str(mounts[i % len(mounts)] / f"{tag}-p{i}"), files_each, start_at)
            for i in range(processes)]
    seconds = parallel(jobs, _create_files)
    return processes * files_each / max(seconds)


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def stream(mounts: list[Path], processes: int, mib: int, tag: str) -> tuple[float, float]:
    paths = [str(mounts[i % len(mounts)] / f"{tag}-{i}.bin") for i in range(processes)]
    start_at = time.time() + 0.5
    wrote = parallel([(p, mib, start_at, True) for p in paths], _stream)
    drop_caches()
    start_at = time.time() + 0.5
    read = parallel([(p, mib, start_at, False) for p in paths], _stream)
    total = processes * mib * (1 << 20) / 1e6
    return total / max(wrote), total / max(read)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    parser.add_argument("--workdir", default=None, help="where clusters live (default: tmp)")
    args = parser.parse_args()
    files_each = 50 if args.quick else 400
    mib = 8 if args.quick else 64
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "files_each": files_each, "mib_each": mib,
    }
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dfs-scale-"))
    try:
        rows: dict[str, float] = {}
        with cluster(workdir, 4, 2) as mounts:
            for processes in (1, 4, 16):
                rows[f"creates/s, {processes} procs, 1 mount"] = creates(
                    mounts[:1], processes, files_each, f"c{processes}")
                print(f"{processes:>2} processes, 1 mount: "
                      f"{rows[f'creates/s, {processes} procs, 1 mount']:.0f} creates/s",
                      flush=True)
            for processes in (4, 16):
                key = f"creates/s, {processes} procs, 2 mounts"
                rows[key] = creates(mounts, processes, files_each, f"m{processes}")
                print(f"{processes:>2} processes, 2 mounts: {rows[key]:.0f} creates/s",
                      flush=True)
        for servers in (4, 8):
            with cluster(workdir, servers, 1) as mounts:
                write, read = stream(mounts, 4, mib, f"s{servers}")
                rows[f"write MB/s, 4 procs, {servers} data servers"] = write
                rows[f"read MB/s, 4 procs, {servers} data servers"] = read
                print(f"{servers} data servers: write {write:.1f} MB/s, read {read:.1f} MB/s",
                      flush=True)
        results["figures"] = rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
