"""The differential exerciser (tests/integration/fsx) on a real `dfs up` mount against
a local directory: several seeded sequences at once, each in its own subdirectory of
the mount and its own local directory, every step compared.

`make test` runs 10,000 operations with fixed seeds; the long variant 1,000,000 with
a seed from the clock. DFS_FSX_SEED sets the first seed of either. A divergence
fails the test with the sequence's last operations and the command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.posix.mounts import running_cluster
from tests.support.local_cluster import LocalCluster
from tests.support.procs import RUN_TOKEN, RUN_TOKEN_ENV

pytestmark = pytest.mark.fuse

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_ENV = "DFS_FSX_SEED"
# Sequences run side by side: each waits on the mount most of the time, so several
# keep the cluster busy; every sequence is still one deterministic seed.
WORKERS = 16


# Small write-back buffers, so the exerciser's writes (up to 64 KiB) are sealed and
# uploaded in the background and committed in order, not only at close; and few
# slices per block, so compactions run all the time beside writes, truncates and
# reads of the same files.
MOUNT_OPTIONS = "upload_at=0.125,write_buffer=0.5,max_slices=3"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("fsx"), "--mount-options",
                         MOUNT_OPTIONS) as running:
        yield running


def first_seed(default: int) -> int:
    return int(os.environ.get(SEED_ENV, default))


def run_sequences(cluster: LocalCluster, local: Path, seed: int, ops: int,
                  timeout_s: float, progress: int = 0) -> None:
    """WORKERS sequences (seeds seed, seed+1, ...) of ops/WORKERS operations each; each
    worker's output goes to local/fsx-SEED.log as it runs (progress lines if asked)."""
    env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN, "PYTHONPATH": str(REPO_ROOT)}
    workers = []
    for index in range(WORKERS):
        name = f"fsx-{seed + index}"
        argv = [sys.executable, "-m", "tests.integration.fsx", "--seed", str(seed + index),
                "--ops", str(ops // WORKERS), "--progress", str(progress),
                str(cluster.mount / name), str(local / name)]
        log_path = local / f"{name}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        workers.append((proc, log_path))
    deadline = time.monotonic() + timeout_s
    failed = []
    for proc, log_path in workers:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output = log_path.read_text().strip()
        print(output.splitlines()[-1] if output else f"{log_path.name}: no output")
        if proc.returncode != 0:
            failed.append(output or f"{log_path.name}: exit {proc.returncode}")
    assert not failed, "\n\n".join(failed)


@pytest.mark.timeout(400)
def test_ten_thousand_operations_match_a_local_directory(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    run_sequences(cluster, tmp_path, first_seed(1), 10_000, timeout_s=360, progress=200)


@pytest.mark.long
@pytest.mark.timeout(4 * 3600)
def test_a_million_operations_match_a_local_directory(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    run_sequences(cluster, tmp_path, first_seed(time.time_ns() % 1_000_000), 1_000_000,
                  timeout_s=4 * 3600 - 60, progress=5_000)
