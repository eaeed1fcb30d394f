"""Smoke run of the benchmark harness (issue 20): `compare.py --quick --rounds 1`.

It must measure every figure on a local directory and on the passthrough mount it
starts itself, measure the floor's round trip and fsync, report dfs either measured
or with the reason it is not, and leave nothing mounted or running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
RUN_TIMEOUT_S = 60.0
CLEANUP_TIMEOUT_S = 20.0


def run_compare(workdir: Path) -> subprocess.CompletedProcess[str]:
    """compare.py in its own process; on a timeout it gets SIGTERM first, so it unmounts."""
    argv = [sys.executable, str(COMPARE), "--quick", "--rounds", "1", "--json",
            "--workdir", str(workdir)]
    env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN}
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=CLEANUP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.fuse
@pytest.mark.timeout(RUN_TIMEOUT_S + 2 * CLEANUP_TIMEOUT_S)
def test_quick_compare_measures_every_figure_for_local_and_passthrough(tmp_path: Path) -> None:
    workdir = tmp_path / "bench"
    try:
        done = run_compare(workdir)
    finally:
        leftovers = fuse_mounts_under([tmp_path])
        for mount in leftovers:
            subprocess.run(["fusermount3", "-uz", mount], check=False)
    assert not leftovers, f"compare.py left mounts behind: {leftovers}"
    assert done.returncode == 0, done.stderr[-4000:]

    result = json.loads(done.stdout)
    assert result["status"]["local"] == "measured"
    assert result["status"]["passthrough"] == "measured"
    assert result["status"]["dfs"], "dfs must be measured or say why not"
    for name in FIGURES:
        figure = result["figures"][name]
        for target in ("local", "passthrough"):
            measured = figure["targets"][target]
            assert measured is not None and measured["median"] > 0, (name, target)
        assert figure["ratios"]["passthrough/local"] > 0, name

    floor = result["floor"]
    assert floor["grpc_round_trip_s"] > 0
    assert floor["fsync_s"] > 0
    for op in FLOOR_OPS:
        assert floor["ops"][op]["floor_ops_per_s"] > 0, op
    assert result["errors"] == {}
    assert (workdir / "results.json").exists()
    assert not (workdir / "local").exists(), "the targets' data must be removed"
