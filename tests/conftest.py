"""Shared fixtures and run-wide checks.

- Every test has a timeout (pyproject's `timeout`; raise it per test with
  @pytest.mark.timeout when a test is known to be long).
- `procs` starts server processes that die at teardown, with their logs
  printed when the test failed.
- At the end of the session, any dfs process or FUSE mount a test left behind
  fails the run (and is cleaned up).
- A FUSE test that skips while /dev/fuse exists is a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import (
    ProcessSet,
    fuse_mounts_under,
    kill_leftovers,
    leftover_processes,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FUSE_DEVICE = Path("/dev/fuse")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    if report.skipped and item.get_closest_marker("fuse") and FUSE_DEVICE.exists():
        report.outcome = "failed"
        report.longrepr = f"FUSE test skipped although {FUSE_DEVICE} exists: {report.longrepr}"


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(request.node, f"rep_{when}", None) is not None
        and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessSet]:
    """Start server processes; all are killed at teardown, logs shown on failure."""
    process_set = ProcessSet(base_dir=tmp_path)
    try:
        yield process_set
    finally:
        if _failed(request) and process_set.procs:
            sys.stdout.write("\n" + process_set.dump_logs() + "\n")
        process_set.cleanup()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A fresh cluster secret made by `dfs init`."""
    from dfs.auth import init_cluster_dir

    path, _ = init_cluster_dir(tmp_path / "cluster")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return
    problems = [f"process left running: {p}" for p in leftover_processes()]
    base = session.config._tmp_path_factory.getbasetemp() if hasattr(
        session.config, "_tmp_path_factory"
    ) else None
    if base is not None:
        problems += [f"FUSE mount left behind: {m}" for m in fuse_mounts_under([base])]
    if problems:
        kill_leftovers()
        for mount in [p.split(": ", 1)[1] for p in problems if p.startswith("FUSE")]:
            os.system(f"fusermount3 -uz '{mount}' >/dev/null 2>&1")
        sys.stderr.write("\n".join(["", "session-end check failed:", *problems, ""]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
