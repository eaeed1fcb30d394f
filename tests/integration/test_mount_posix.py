"""The namespace errno tables (tests/posix/tables/) on a real dfs mount, through a
worker that takes each row's caller: root, unprivileged users, and users whose only
access comes from supplementary groups. Every row must give Linux's answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.posix.mount_target import MountTarget
from tests.posix.mounts import extra_mount, running_cluster
from tests.posix.table import Case, load_all, run_case

pytestmark = pytest.mark.fuse

CASES = load_all()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountTarget]:
    base = tmp_path_factory.mktemp("posix-mount")
    with (
        running_cluster(base) as cluster,
        extra_mount(cluster, base / "shared") as mount,
        MountTarget(mount.path) as posix_target,
    ):
        yield posix_target


def test_tables_have_unprivileged_and_group_callers() -> None:
    callers = {step.creds for case in CASES for step in case.steps}
    assert any(c.uid == 0 for c in callers)
    assert any(c.uid != 0 and not c.groups for c in callers)
    assert any(c.uid != 0 and c.groups for c in callers)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_table_on_mount(target: MountTarget, case: Case) -> None:
    assert run_case(target, case) == []
