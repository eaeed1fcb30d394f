"""A profiled pass over dfs: each workload once more, with py-spy on every dfs process.

It runs after the measured rounds, so the sampling never touches a reported
figure. For each workload it writes WORKLOAD.txt (the figures of this pass, then a
summary per process, busiest first), WORKLOAD-mount.svg (a flamegraph of the mount
process) and raw/WORKLOAD-PROCESS.txt (collapsed stacks, for other tools).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spy import Recording, find_py_spy, read_collapsed, summary

MOUNT = "mount"
# One fs.py run of the given workloads on dfs; its JSON result, or None if it failed.
RunFs = Callable[[list[str]], dict[str, Any] | None]


def profile_dfs(
    run_fs: RunFs,
    processes: dict[str, int],
    workloads: list[str],
    out_dir: Path,
    progress: Callable[[str], None],
) -> str:
    """Profile each workload; returns a line for the report."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "profile skipped: py-spy is not installed (pip install py-spy)"
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for workload in workloads:
        progress(f"profiling dfs: {workload} with py-spy on {', '.join(processes)}")
        recordings = {
            name: Recording(
                py_spy, pid, out_dir / "raw" / f"{workload}-{name}.txt",
                out_dir / f"{workload}-mount.svg" if name == MOUNT else None,
            )
            for name, pid in processes.items()
        }
        result = run_fs([workload])
        for name, recording in recordings.items():
            problems += [f"{workload} {name}: {p}" for p in recording.stop()]
        (out_dir / f"{workload}.txt").write_text(_report(workload, result, recordings))
    if problems:
        return f"profile in {out_dir}, with failures: {'; '.join(problems)}"
    return f"profile written to {out_dir}"


def _report(workload: str, result: dict[str, Any] | None, recordings: dict[str, Recording]) -> str:
    lines = [f"py-spy profile of dfs during the {workload} workload (one fs.py run)", ""]
    if result is None:
        lines.append("fs.py failed: figures unknown")
    else:
        for figure, measured in result["figures"].items():
            note = f" ({measured['note']})" if measured["note"] else ""
            lines.append(f"{figure}: {measured['value']:.1f} {measured['unit']}{note}")
        lines += [f"error {name}: {message}" for name, message in result["errors"].items()]
    profiles = {name: read_collapsed(rec.raw_path) for name, rec in recordings.items()}
    for name in sorted(profiles, key=lambda n: profiles[n].waiting - profiles[n].samples):
        lines += ["", summary(name, profiles[name], recordings[name].elapsed_s)]
    return "\n".join(lines) + "\n"
