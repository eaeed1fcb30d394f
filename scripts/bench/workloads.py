"""The registry of workloads by name, in the order a run performs them."""

from __future__ import annotations

from collections.abc import Callable

import wl_data
import wl_files
import wl_meta
import wl_tree
from context import Bench
from figures import WORKLOAD_NAMES, Figure

Workload = Callable[[Bench], list[Figure]]

WORKLOADS: dict[str, Workload] = {
    "seq": wl_data.sequential,
    "rand": wl_data.random_io,
    "small": wl_files.small_files,
    "churn": wl_meta.churn,
    "readdir": wl_meta.readdir,
    "tree": wl_tree.tree,
    "parallel": wl_files.parallel_creates,
}

assert tuple(WORKLOADS) == WORKLOAD_NAMES, "figures.CATALOG and WORKLOADS disagree"
