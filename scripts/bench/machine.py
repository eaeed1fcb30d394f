"""A description of the machine and file system a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from mounts import MOUNTINFO


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def file_system_of(path: Path) -> str:
    """Type and source of the mount holding `path` (the longest matching mount point)."""
    target = str(path.resolve())
    best, best_len = "unknown", -1
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        mount_point = fields[4]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best_len:
            after = fields[fields.index("-") + 1:]
            best, best_len = f"{after[0]} on {after[1]}", len(mount_point)
    return best


def describe(workdir: Path) -> dict[str, object]:
    import pyfuse3  # here, so the other figures do not need pyfuse3 importable

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyfuse3": pyfuse3.__version__,
        "workdir_fs": file_system_of(workdir),
    }
