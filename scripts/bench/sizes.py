"""How big each workload is: the full sizes issue 20 asks for, a medium set, a smoke set.

Only numbers live here; the workloads read them and never hard-code their own.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sizes:
    """Sizes and time caps of one benchmark run."""

    seq_bytes: int
    seq_block: int
    rand_file_bytes: int
    rand_block: int
    rand_seconds: float
    small_files: int
    small_dirs: int
    small_file_bytes: int
    churn_ops: int
    readdir_entries: int
    # None copies the whole standard library; otherwise only these top-level entries.
    tree_subset: tuple[str, ...] | None
    parallel_procs: int
    parallel_files_per_proc: int
    # No timed phase runs longer than this; a phase cut short says so in its note.
    phase_cap_s: float


FULL = Sizes(
    seq_bytes=512 * MIB,
    seq_block=MIB,
    rand_file_bytes=1024 * MIB,
    rand_block=4096,
    rand_seconds=10.0,
    small_files=5000,
    small_dirs=50,
    small_file_bytes=4096,
    churn_ops=2000,
    readdir_entries=10_000,
    tree_subset=None,
    parallel_procs=4,
    parallel_files_per_proc=1000,
    phase_cap_s=120.0,
)

# Between the two: what a 3-round run with dfs finishes in about half an hour on a
# 2-core machine while dfs runs its metadata operations at about 100 per second
# (the full sizes take tens of minutes per dfs round there).
MEDIUM = Sizes(
    seq_bytes=512 * MIB,
    seq_block=MIB,
    rand_file_bytes=256 * MIB,
    rand_block=4096,
    rand_seconds=10.0,
    small_files=1000,
    small_dirs=50,
    small_file_bytes=4096,
    churn_ops=500,
    readdir_entries=2000,
    tree_subset=("asyncio", "concurrent", "email", "http", "importlib", "json", "logging",
                 "urllib", "xml"),
    parallel_procs=4,
    parallel_files_per_proc=250,
    phase_cap_s=120.0,
)

# A smoke run: every phase does real work through every code path, and a whole
# round of the three targets (dfs included) fits in `make test`'s budget.
QUICK = Sizes(
    seq_bytes=8 * MIB,
    seq_block=MIB,
    rand_file_bytes=8 * MIB,
    rand_block=4096,
    rand_seconds=0.3,
    small_files=40,
    small_dirs=4,
    small_file_bytes=4096,
    churn_ops=25,
    readdir_entries=100,
    tree_subset=("json",),
    parallel_procs=4,
    parallel_files_per_proc=10,
    phase_cap_s=5.0,
)

SIZES: dict[str, Sizes] = {"quick": QUICK, "medium": MEDIUM, "full": FULL}
