"""The arithmetic behind hedged reads and compaction, without servers: the hedge delay
from recent latencies (a fixed delay until measured, the percentile within its bounds,
sizes in their own windows), and the ranges of a block a compaction's chunk covers."""

from __future__ import annotations

from dfs.client import hedge
from dfs.client.hedge import ReadLatency
from dfs.client.slices import covered
from dfs.rpc import common_pb2

KIB = 1024


def test_unmeasured_sizes_wait_the_fixed_delay() -> None:
    latency = ReadLatency()
    for _ in range(hedge.MIN_SAMPLES - 1):
        latency.record(4 * KIB, 0.001)
    assert latency.delay(4 * KIB) == hedge.UNMEASURED_S
    latency.record(4 * KIB, 0.001)
    assert latency.delay(4 * KIB) == hedge.FLOOR_S  # 1 ms is below the floor


def test_the_delay_is_the_percentile_within_bounds() -> None:
    latency = ReadLatency()
    for index in range(100):  # 10 ms .. 1 s
        latency.record(64 * KIB, (index + 1) / 100)
    assert latency.delay(64 * KIB) == 0.95
    for _ in range(hedge.WINDOW):  # the window forgets the old samples
        latency.record(64 * KIB, 5.0)
    assert latency.delay(64 * KIB) == hedge.CEILING_S


def test_sizes_far_apart_keep_their_own_windows() -> None:
    latency = ReadLatency()
    for _ in range(hedge.MIN_SAMPLES):
        latency.record(4 << 20, 0.5)
        latency.record(4 * KIB, 0.03)
    assert latency.delay(4 << 20) == 0.5
    assert latency.delay(2 * KIB) == 0.03
    assert latency.delay(256 * KIB) == hedge.UNMEASURED_S


def piece(offset: int, length: int, chunk_id: int) -> common_pb2.Slice:
    return common_pb2.Slice(offset=offset, length=length, chunk_id=chunk_id)


def test_covered_ranges_merge_overlaps_and_keep_holes() -> None:
    slices = [piece(0, 10, 1), piece(5, 10, 2), piece(30, 5, 3), piece(15, 5, 4)]
    assert covered(slices, 64) == [(0, 20), (30, 35)]
    assert covered([], 64) == []
