"""Smoke runs of the benchmark harness (issue 20): `compare.py --quick --rounds 1`.

Each must measure every figure on a local directory and on the passthrough mount it
starts itself, measure the floor's round trip and fsync, and leave nothing mounted
or running. The `make test` run leaves dfs out to stay within its time budget; the
long variant includes dfs (`dfs up`, 3 metadata, 4 data, R = 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import RUN_TOKEN, RUN_TOKEN_ENV, fuse_mounts_under

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPARE = REPO_ROOT / "scripts" / "bench" / "compare.py"
# The figures issue 20 asks for; the harness's contract with docs and readers.
FIGURES = (
    "seq_write", "seq_read", "rand_read", "rand_write",
    "small_create", "small_stat_cold", "small_stat_warm", "small_read", "small_delete",
    "mkdir", "rmdir", "create_empty", "rename_same_dir", "rename_cross_dir", "unlink",
    "readdir_cold", "readdir_warm", "ls_l",
    "tree_copy", "tree_verify", "tree_rm",
    "parallel_create",
)
FLOOR_OPS = ("create_empty", "mkdir", "rename_same_dir", "rename_cross_dir")
# Bounds, not speed targets: the run takes about 6 s on an idle machine.
RUN_TIMEOUT_S = 90.0
RUN_WITH_DFS_TIMEOUT_S = 400.0
CLEANUP_TIMEOUT_S = 30.0


def run_compare(
    workdir: Path, timeout_s: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    """compare.py in its own process; on a timeout it gets SIGTERM first, so it unmounts."""
    argv = [sys.executable, str(COMPARE), "--quick", "--rounds", "1", "--json",
            "--workdir", str(workdir), *extra]
    env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN}
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=CLEANUP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_and_unmount(tmp_path: Path, timeout_s: float, *extra: str) -> dict[str, Any]:
    """Run compare.py, fail on any mount left behind (removing it), return its JSON."""
    workdir = tmp_path / "bench"
    try:
        done = run_compare(workdir, timeout_s, *extra)
    finally:
        leftovers = fuse_mounts_under([tmp_path])
        for mount in leftovers:
            subprocess.run(["fusermount3", "-uz", mount], check=False)
    assert not leftovers, f"compare.py left mounts behind: {leftovers}"
    assert (workdir / "results.json").exists()
    assert not (workdir / "local").exists(), "the targets' data must be removed"
    result: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0 or "dfs" in result["errors"], done.stderr[-4000:]
    return result


def assert_every_figure(result: dict[str, Any], targets: tuple[str, ...]) -> None:
    for target in targets:
        assert result["status"][target] == "measured", target
        assert target not in result["errors"], result["errors"][target]
    for name in FIGURES:
        figure = result["figures"][name]
        for target in targets:
            measured = figure["targets"][target]
            assert measured is not None and measured["median"] > 0, (name, target)
        assert figure["ratios"]["passthrough/local"] > 0, name
    floor = result["floor"]
    assert floor["grpc_round_trip_s"] > 0
    assert floor["fsync_s"] > 0
    for op in FLOOR_OPS:
        assert floor["ops"][op]["floor_ops_per_s"] > 0, op


@pytest.mark.fuse
@pytest.mark.timeout(RUN_TIMEOUT_S + 2 * CLEANUP_TIMEOUT_S)
def test_quick_compare_measures_every_figure_for_local_and_passthrough(tmp_path: Path) -> None:
    result = run_and_unmount(tmp_path, RUN_TIMEOUT_S, "--no-dfs")
    assert_every_figure(result, ("local", "passthrough"))
    assert result["status"]["dfs"] == "left out (--no-dfs)"
    assert result["errors"] == {}


@pytest.mark.fuse
@pytest.mark.long
@pytest.mark.timeout(RUN_WITH_DFS_TIMEOUT_S + 2 * CLEANUP_TIMEOUT_S)
def test_quick_compare_with_dfs_reports_it_beside_local_and_passthrough(tmp_path: Path) -> None:
    result = run_and_unmount(tmp_path, RUN_WITH_DFS_TIMEOUT_S)
    assert_every_figure(result, ("local", "passthrough"))
    if result["status"]["dfs"] != "measured":
        pytest.fail(f"dfs was not measured: {result['status']['dfs']}")
    measured = [n for n in FIGURES if result["figures"][n]["targets"]["dfs"] is not None]
    assert measured, "dfs produced no figure"
    for name in measured:
        assert result["figures"][name]["ratios"]["dfs/passthrough"] is not None, name
