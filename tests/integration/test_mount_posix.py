"""POSIX on a real dfs mount: the namespace errno tables (tests/posix/tables/) through a
worker that takes each row's caller (root, unprivileged users, and users whose only
access comes from supplementary groups), every row giving Linux's answer; and real
programs (git, sqlite3 in WAL and rollback-journal modes, tar + diff -r, compileall)
on the same cluster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.posix import programs
from tests.posix.mount_target import MountTarget
from tests.posix.mounts import extra_mount, running_cluster
from tests.posix.table import Case, load_all, run_case

pytestmark = pytest.mark.fuse

CASES = load_all()


@dataclass
class Mounted:
    target: MountTarget  # the tables' worker, on a mount with allow_other
    mount: Path  # the mount `dfs up` made


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    base = tmp_path_factory.mktemp("posix-mount")
    with (
        running_cluster(base) as cluster,
        extra_mount(cluster, base / "shared") as shared,
        MountTarget(shared.path) as target,
    ):
        yield Mounted(target, cluster.mount)


def test_tables_have_unprivileged_and_group_callers() -> None:
    callers = {step.creds for case in CASES for step in case.steps}
    assert any(c.uid == 0 for c in callers)
    assert any(c.uid != 0 and not c.groups for c in callers)
    assert any(c.uid != 0 and c.groups for c in callers)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_table_on_mount(mounted: Mounted, case: Case) -> None:
    assert run_case(mounted.target, case) == []


@pytest.mark.timeout(120)
def test_git_init_add_commit_status_clone_fsck(mounted: Mounted, tmp_path: Path) -> None:
    work = mounted.mount / "git"
    work.mkdir()
    programs.check_git(work, tmp_path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("journal", ["WAL", "DELETE"])
def test_sqlite_integrity(mounted: Mounted, journal: str) -> None:
    work = mounted.mount / f"sqlite-{journal}"
    work.mkdir()
    programs.check_sqlite(work, journal)


@pytest.mark.timeout(120)
def test_tar_extract_then_diff_and_compileall(mounted: Mounted, tmp_path: Path) -> None:
    target = mounted.mount / "tar"
    target.mkdir()
    programs.check_tar_and_compileall(target, tmp_path)
