"""Data-path workloads: sequential 1 MiB streams and 4 KiB random I/O on one big file.

Writes are durable (an fsync ends each write phase, inside the timing); every
read phase starts with caches dropped.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

from context import Bench, Deadline, rate
from figures import Figure
from sizes import MIB

# A fixed seed, so every target reads and writes the same offsets.
RANDOM_SEED = 20
FILL_HEADER_BYTES = 8


def block_pattern(size: int) -> bytearray:
    """One block of incompressible bytes; writers stamp a counter into its head."""
    return bytearray(random.Random(RANDOM_SEED).randbytes(size))


def write_stream(path: Path, total: int, block: int, deadline: Deadline) -> int:
    """Write up to `total` bytes in `block`-sized writes, fsync, close; returns bytes."""
    pattern = block_pattern(block)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while written < total and not deadline.expired():
            pattern[:FILL_HEADER_BYTES] = written.to_bytes(FILL_HEADER_BYTES, "little")
            written += os.write(fd, pattern[: min(block, total - written)])
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def read_stream(path: Path, block: int, deadline: Deadline) -> tuple[int, bool]:
    """Read `path` to its end (or the deadline); returns (bytes read, reached EOF)."""
    got = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while not deadline.expired():
            chunk = os.read(fd, block)
            if not chunk:
                return got, True
            got += len(chunk)
    finally:
        os.close(fd)
    return got, False


def sequential(bench: Bench) -> Iterator[Figure]:
    sizes = bench.sizes
    path = bench.root / "seq.bin"
    bench.progress(f"seq: writing {sizes.seq_bytes // MIB} MiB")
    started = time.perf_counter()
    written = write_stream(path, sizes.seq_bytes, sizes.seq_block, Deadline(sizes.phase_cap_s))
    yield rate("seq_write", written, sizes.seq_bytes, time.perf_counter() - started, MIB)

    bench.drop_caches()
    bench.progress("seq: reading it back")
    started = time.perf_counter()
    got, at_eof = read_stream(path, sizes.seq_block, Deadline(sizes.phase_cap_s))
    elapsed = time.perf_counter() - started
    read_fig = rate("seq_read", got, written, elapsed, MIB)
    if not at_eof and not read_fig.note:
        read_fig = Figure("seq_read", read_fig.value, "capped before end of file")
    yield read_fig
    path.unlink()


def random_io(bench: Bench) -> Iterator[Figure]:
    sizes = bench.sizes
    path = bench.root / "rand.bin"
    bench.progress(f"rand: preparing a {sizes.rand_file_bytes // MIB} MiB file")
    file_bytes = write_stream(
        path, sizes.rand_file_bytes, MIB, Deadline(sizes.phase_cap_s)
    )
    blocks = file_bytes // sizes.rand_block
    if blocks == 0:
        raise OSError(f"could not prepare {path} within {sizes.phase_cap_s} s")
    fd = os.open(path, os.O_RDWR)
    try:
        bench.drop_caches()
        bench.progress(f"rand: 4 KiB reads for {sizes.rand_seconds:g} s")
        yield _random_reads(fd, blocks, sizes.rand_block, sizes.rand_seconds)
        bench.progress(f"rand: 4 KiB writes for {sizes.rand_seconds:g} s")
        yield _random_writes(fd, blocks, sizes.rand_block, sizes.rand_seconds)
    finally:
        os.close(fd)
    path.unlink()


def _random_reads(fd: int, blocks: int, block: int, seconds: float) -> Figure:
    offsets = random.Random(RANDOM_SEED)
    deadline = Deadline(seconds)
    done = 0
    started = time.perf_counter()
    while not deadline.expired():
        os.pread(fd, block, offsets.randrange(blocks) * block)
        done += 1
    return Figure("rand_read", done / (time.perf_counter() - started))


def _random_writes(fd: int, blocks: int, block: int, seconds: float) -> Figure:
    offsets = random.Random(RANDOM_SEED + 1)
    payload = bytes(block_pattern(block))
    deadline = Deadline(seconds)
    done = 0
    started = time.perf_counter()
    while not deadline.expired():
        os.pwrite(fd, payload, offsets.randrange(blocks) * block)
        done += 1
    os.fsync(fd)
    return Figure("rand_write", done / (time.perf_counter() - started))
