"""The registry of workloads by name, in the order a run performs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import wl_data
import wl_files
import wl_meta
import wl_tree
from context import Bench
from figures import WORKLOAD_NAMES, Figure

# A workload yields each figure as soon as it is measured, so a later failure
# (an EIO from the target, say) does not lose the figures before it.
Workload = Callable[[Bench], Iterator[Figure]]

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
