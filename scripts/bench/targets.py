"""Issue 20's targets for dfs: ratios measured in one run, a report, never a test.

Against the passthrough for the figures the kernel's caches, readdir paging and
concurrency should carry; against the per-operation floor for sequential durable
operations (each one Paxos round).
"""

from __future__ import annotations

VS_PASSTHROUGH: dict[str, float] = {
    "seq_write": 0.75,
    "seq_read": 0.8,
    "rand_read": 1.0,
    "tree_copy": 0.7,
    "parallel_create": 1.0,
    "small_stat_warm": 3.0,
    "readdir_warm": 10.0,
}
VS_FLOOR = 0.5
