"""The POSIX errno tables (tests/posix/tables/) on the namespace state machine, and on a
real local directory as the reference: the tables themselves must say what Linux says."""

from __future__ import annotations

import os

import pytest

from tests.posix.local_target import LocalTarget
from tests.posix.ns_target import NamespaceTarget
from tests.posix.table import Case, load_all, run_case

CASES = load_all()


def test_tables_cover_every_operation_as_root_and_not() -> None:
    from tests.posix.vocab import OPERATIONS

    as_root = {step.op for case in CASES for step in case.steps if step.creds.uid == 0}
    as_user = {step.op for case in CASES for step in case.steps if step.creds.uid != 0}
    with_groups = {step.op for case in CASES for step in case.steps if step.creds.groups}
    assert set(OPERATIONS) - as_root == set()
    assert set(OPERATIONS) - as_user == set()
    assert set(OPERATIONS) - with_groups == set()


@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_table_on_namespace(case: Case) -> None:
    assert run_case(NamespaceTarget(), case) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching callers needs root")
def test_tables_on_local_directory() -> None:
    with LocalTarget() as target:
        mismatches = [line for case in CASES for line in run_case(target, case)]
    assert mismatches == []
