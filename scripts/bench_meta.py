#!/usr/bin/env python3
"""Benchmarks of the metadata layer.

--statemachine (the default) measures the bare namespace state machine, in process:
apply rate of creates, renames and getattrs (typed API and through the byte codec), the
resident memory per inode of a namespace of N files in D directories applied directly,
and the time to snapshot and restore that namespace. A gRPC mode comes with the
metadata server.

    .venv/bin/python scripts/bench_meta.py --statemachine [--files 1000000] [--dirs 1000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfs.meta import codec
from dfs.meta.ops import GetAttr, MakeNode, Rename
from dfs.meta.results import AttrResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Caller, Kind
from dfs.paxos.machine import ApplyContext

USER = Caller(1000, 1000, (1000,))


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Driver:
    """Feeds a machine commands with increasing state time, as the log would."""

    def __init__(self, machine: NamespaceMachine) -> None:
        self.machine = machine
        self.slot = 0

    def ctx(self) -> ApplyContext:
        self.slot += 1
        return ApplyContext(self.slot, 0, 1_700_000_000_000_000_000 + self.slot * 1000, 1)

    def mkdir(self, parent: int, name: bytes) -> int:
        result = self.machine.execute(
            MakeNode(ROOT, parent, name, Kind.DIRECTORY, 0o777), self.ctx()
        )
        assert isinstance(result, AttrResult) and result.attr is not None, result
        return result.attr.ino


def timed(count: int, body: Callable[[int], None]) -> float:
    """Operations per second of body(i) for i in range(count)."""
    started = time.perf_counter()
    for number in range(count):
        body(number)
    return count / (time.perf_counter() - started)


def apply_rates(count: int) -> dict[str, float]:
    machine = NamespaceMachine()
    driver = Driver(machine)
    typed_dir = driver.mkdir(ROOT_INO, b"typed")
    codec_dir = driver.mkdir(ROOT_INO, b"codec")
    execute = machine.execute
    rates: dict[str, float] = {}
    rates["create (typed execute)"] = timed(
        count,
        lambda i: execute(
            MakeNode(USER, typed_dir, b"file-%d" % i, Kind.REGULAR, 0o644), driver.ctx()
        ),
    )
    apply = machine.apply
    rates["create (bytes: encode, apply, decode)"] = timed(
        count,
        lambda i: codec.decode_result(
            apply(
                codec.encode_command(
                    MakeNode(USER, codec_dir, b"file-%d" % i, Kind.REGULAR, 0o644)
                ),
                driver.ctx(),
            )
        ),
    )
    rates["rename within a directory (typed)"] = timed(
        count,
        lambda i: execute(
            Rename(USER, typed_dir, b"file-%d" % i, typed_dir, b"moved-%d" % i), driver.ctx()
        ),
    )
    rates["rename across directories (bytes)"] = timed(
        count,
        lambda i: apply(
            codec.encode_command(
                Rename(USER, codec_dir, b"file-%d" % i, typed_dir, b"file-%d" % i)
            ),
            driver.ctx(),
        ),
    )
    first = machine.state.next_ino - 2 * count
    query = machine.query
    rates["getattr (query)"] = timed(count, lambda i: query(GetAttr(USER, first + i)))
    return rates


def big_namespace(files: int, dirs: int) -> dict[str, float]:
    gc.collect()
    before = rss_bytes()
    machine = NamespaceMachine()
    driver = Driver(machine)
    directories = [driver.mkdir(ROOT_INO, b"dir-%04d" % number) for number in range(dirs)]
    execute = machine.execute
    started = time.perf_counter()
    for number in range(files):
        parent = directories[number % dirs]
        execute(MakeNode(USER, parent, b"file-%07d" % number, Kind.REGULAR, 0o644), driver.ctx())
    build_seconds = time.perf_counter() - started
    gc.collect()
    grown = rss_bytes() - before
    inodes = len(machine.state.inodes)

    started = time.perf_counter()
    image = machine.snapshot()
    snapshot_seconds = time.perf_counter() - started

    started = time.perf_counter()
    restored = NamespaceMachine()
    restored.restore(image)
    restore_seconds = time.perf_counter() - started
    assert len(restored.state.inodes) == inodes
    del restored

    stepped = snapshot_in_steps(machine, driver, directories)
    return {
        "inodes": inodes,
        "build creates/s": files / build_seconds,
        "rss growth MiB": grown / (1 << 20),
        "bytes per inode": grown / inodes,
        "snapshot s": snapshot_seconds,
        "snapshot MiB": len(image) / (1 << 20),
        "restore s": restore_seconds,
        **stepped,
    }


STEP_INODES = 2_000


def snapshot_in_steps(
    machine: NamespaceMachine, driver: Driver, directories: list[int]
) -> dict[str, float]:
    """The longest pause a snapshot written in steps puts between two commands, with a
    create applied after every step."""
    started = time.perf_counter()
    machine.begin_snapshot()
    begin_ms = (time.perf_counter() - started) * 1000
    longest_step_ms = 0.0
    number = 0
    done = False
    while not done:
        started = time.perf_counter()
        done = machine.snapshot_step(STEP_INODES)
        longest_step_ms = max(longest_step_ms, (time.perf_counter() - started) * 1000)
        parent = directories[number % len(directories)]
        machine.execute(
            MakeNode(USER, parent, b"during-%d" % number, Kind.REGULAR, 0o644), driver.ctx()
        )
        number += 1
    started = time.perf_counter()
    machine.finish_snapshot()
    finish_ms = (time.perf_counter() - started) * 1000
    return {
        "stepped snapshot: begin ms": begin_ms,
        f"stepped snapshot: longest step of {STEP_INODES} inodes ms": longest_step_ms,
        "stepped snapshot: finish ms": finish_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--statemachine", action="store_true", help="bare state machine (default)")
    parser.add_argument("--ops", type=int, default=100_000, help="operations per apply-rate row")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--dirs", type=int, default=1_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # Memory first, in a process that has allocated little yet.
    namespace = big_namespace(args.files, args.dirs)
    gc.collect()
    rates = apply_rates(args.ops)
    machine_line = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps({"machine": machine_line, "rates": rates, "namespace": namespace}))
        return
    print(f"machine: {machine_line}")
    for name, rate in rates.items():
        print(f"{name:55s} {rate:12,.0f} ops/s")
    for name, value in namespace.items():
        print(f"{name:55s} {value:12,.1f}")


if __name__ == "__main__":
    main()
