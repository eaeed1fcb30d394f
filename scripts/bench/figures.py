"""The catalog of figures the file-system benchmark reports: name, unit, meaning.

Every figure is a rate (more is better), so a ratio of two targets reads the same
way for all of them. Workloads produce values; this module only names them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FigureSpec:
    """What one figure measures and in which unit."""

    name: str
    workload: str
    unit: str
    meaning: str


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured value of one figure; `note` says when a phase was cut short."""

    name: str
    value: float
    note: str = ""


CATALOG: tuple[FigureSpec, ...] = (
    FigureSpec("seq_write", "seq", "MiB/s", "sequential write in 1 MiB blocks, fsync included"),
    FigureSpec("seq_read", "seq", "MiB/s", "sequential read in 1 MiB blocks, cold caches"),
    FigureSpec("rand_read", "rand", "IOPS", "4 KiB random reads, cold caches, one thread"),
    FigureSpec("rand_write", "rand", "IOPS", "4 KiB random writes, fsync at the end included"),
    FigureSpec("small_create", "small", "files/s", "create + write 4 KiB + close, over dirs"),
    FigureSpec("small_stat_cold", "small", "files/s", "stat of every small file, cold caches"),
    FigureSpec("small_stat_warm", "small", "files/s", "stat of every small file again"),
    FigureSpec("small_read", "small", "files/s", "open + read + close, cold caches"),
    FigureSpec("small_delete", "small", "files/s", "unlink of every small file"),
    FigureSpec("mkdir", "churn", "ops/s", "sequential mkdir in one directory"),
    FigureSpec("rmdir", "churn", "ops/s", "sequential rmdir"),
    FigureSpec("create_empty", "churn", "ops/s", "sequential create + close of empty files"),
    FigureSpec("rename_same_dir", "churn", "ops/s", "rename within one directory"),
    FigureSpec("rename_cross_dir", "churn", "ops/s", "rename into another directory"),
    FigureSpec("unlink", "churn", "ops/s", "unlink of empty files"),
    FigureSpec("readdir_cold", "readdir", "entries/s", "listing of one big directory, cold"),
    FigureSpec("readdir_warm", "readdir", "entries/s", "the same listing again"),
    FigureSpec("ls_l", "readdir", "entries/s", "`ls -l` of the big directory, cold"),
    FigureSpec("tree_copy", "tree", "files/s", "copy of Python's standard library (cp -a)"),
    FigureSpec("tree_verify", "tree", "files/s", "sha256 of every copied file, cold"),
    FigureSpec("tree_rm", "tree", "files/s", "`rm -r` of the copy"),
    FigureSpec("parallel_create", "parallel", "ops/s", "4 processes creating empty files at once"),
)

SPEC_BY_NAME: dict[str, FigureSpec] = {spec.name: spec for spec in CATALOG}
WORKLOAD_NAMES: tuple[str, ...] = tuple(dict.fromkeys(spec.workload for spec in CATALOG))

# Sequential operations that dfs makes durable through one Paxos round each; the
# compare script holds them against 1 / (passthrough op + gRPC round trip + fsync).
DURABLE_SEQUENTIAL_OPS: tuple[str, ...] = (
    "create_empty",
    "mkdir",
    "rename_same_dir",
    "rename_cross_dir",
)


def figures_of(workloads: list[str]) -> list[str]:
    """Figure names the given workloads produce, in catalog order."""
    return [spec.name for spec in CATALOG if spec.workload in workloads]
