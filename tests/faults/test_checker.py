"""The fault suite's checkers: they accept what they must and reject what they must."""

from __future__ import annotations

import errno

from dfs.faults.files import FileVersions, lost_acknowledged, mixed_reads
from dfs.faults.history import PENDING, History, Operation, dump_operations, load_operations
from dfs.faults.linearizable import (
    DirectoryModel,
    check_history,
    check_register,
    first_violation,
)


def op(kind: str, invoke: float, response: float, **kw: object) -> Operation:
    return Operation(client=0, invoke=invoke, response=response, kind=kind, key=b"k", **kw)  # type: ignore[arg-type]


def test_sequential_history_is_linearizable() -> None:
    ops = [
        op("put", 0, 1, value=b"a"),
        op("get", 2, 3, output=b"a"),
        op("cas", 4, 5, expected=b"a", value=b"b", output=True),
        op("get", 6, 7, output=b"b"),
    ]
    assert check_register(ops)


def test_stale_read_after_acknowledged_write_is_rejected() -> None:
    ops = [op("put", 0, 1, value=b"a"), op("put", 2, 3, value=b"b"), op("get", 4, 5, output=b"a")]
    assert not check_register(ops)


def test_concurrent_read_may_see_either_value() -> None:
    ops = [op("put", 0, 1, value=b"a"), op("put", 2, 6, value=b"b"), op("get", 3, 4, output=b"a")]
    assert check_register(ops)


def test_pending_write_may_or_may_not_take_effect() -> None:
    pending = op("put", 0, PENDING, value=b"x")
    assert check_register([pending, op("get", 1, 2, output=b"x")])
    assert check_register([pending, op("get", 1, 2, output=None)])


def test_read_cannot_flip_back() -> None:
    ops = [
        op("put", 0, PENDING, value=b"x"),
        op("get", 1, 2, output=b"x"),
        op("get", 3, 4, output=None),
    ]
    assert not check_register(ops)


def test_cas_outcome_must_match_state() -> None:
    ops = [op("put", 0, 1, value=b"a"), op("cas", 2, 3, expected=b"z", value=b"b", output=True)]
    assert not check_register(ops)


def test_history_is_checked_per_key() -> None:
    good = Operation(0, 0, 1, "put", b"x", value=b"1")
    bad_put = Operation(1, 0, 1, "put", b"y", value=b"2")
    bad_get = Operation(1, 2, 3, "get", b"y", output=None)
    assert check_history([good, bad_put, bad_get]) == b"y"
    assert check_history([good]) is None


def test_many_concurrent_ops_stay_fast() -> None:
    """Caching keeps a wide concurrent history tractable."""
    ops = [op("put", 0, 100, value=b"%d" % i) for i in range(14)]
    ops.append(op("get", 101, 102, output=b"7"))
    assert check_register(ops)
    ops.append(op("get", 103, 104, output=b"nope"))
    assert not check_register(ops)


def test_lost_cas_answer_may_have_swapped_or_not() -> None:
    put = op("put", 0, 1, value=b"a")
    pending_cas = op("cas", 2, PENDING, expected=b"a", value=b"b")
    assert check_register([put, pending_cas, op("get", 3, 4, output=b"b")])
    assert check_register([put, pending_cas, op("get", 3, 4, output=b"a")])
    assert not check_register([put, pending_cas, op("get", 3, 4, output=b"c")])


def test_cas_reported_failed_but_applied_is_rejected() -> None:
    """What a retry applied twice looks like: the swap happened, its answer says no."""
    ops = [
        op("put", 0, 1, value=b"a"),
        op("cas", 2, 3, expected=b"a", value=b"b", output=False),
        op("get", 4, 5, output=b"b"),
    ]
    assert not check_register(ops)


def test_long_sequential_history_needs_no_recursion() -> None:
    ops = []
    for i in range(3000):
        ops.append(op("put", 3 * i, 3 * i + 1, value=b"%d" % i))
        ops.append(op("get", 3 * i + 1.5, 3 * i + 2, output=b"%d" % i))
    assert check_register(ops)


def dir_op(kind: str, invoke: float, response: float, name: bytes, output: object = 0,
           source: bytes | None = None) -> Operation:
    return Operation(0, invoke, response, kind, b"/d", value=name, expected=source,
                     output=output)  # type: ignore[arg-type]


def listing(invoke: float, response: float, *names: bytes) -> Operation:
    return Operation(0, invoke, response, "list", b"/d", output=tuple(sorted(names)))


def test_directory_history_linearizable() -> None:
    ops = [
        dir_op("create", 0, 1, b"a"),
        dir_op("create", 0.5, 2, b"a", errno.EEXIST),  # concurrent: the other one won
        dir_op("mkdir", 3, 4, b"sub"),
        dir_op("rename", 5, 6, b"b", source=b"a"),
        listing(7, 8, b"b", b"sub"),
        dir_op("unlink", 9, 10, b"sub", errno.EISDIR),
        dir_op("unlink", 11, 12, b"b"),
        dir_op("unlink", 11.5, 12.5, b"b", errno.ENOENT),
        listing(13, 14, b"sub"),
        dir_op("stat", 15, 16, b"sub"),
        dir_op("stat", 15, 16, b"b", errno.ENOENT),
    ]
    assert first_violation(ops, DirectoryModel()) is None


def test_directory_entry_back_from_the_dead_is_rejected() -> None:
    ops = [
        dir_op("create", 0, 1, b"a"),
        dir_op("unlink", 2, 3, b"a"),
        listing(4, 5, b"a"),
    ]
    assert first_violation(ops, DirectoryModel()) == b"/d"


def test_stat_of_a_renamed_away_name_is_rejected() -> None:
    ops = [
        dir_op("create", 0, 1, b"a"),
        dir_op("rename", 2, 3, b"b", source=b"a"),
        dir_op("stat", 4, 5, b"a"),  # found although renamed away before the call
    ]
    assert first_violation(ops, DirectoryModel()) == b"/d"


def test_rename_seen_twice_is_rejected() -> None:
    ops = [
        dir_op("create", 0, 1, b"a"),
        dir_op("rename", 2, 3, b"b", source=b"a"),
        dir_op("rename", 4, 5, b"c", source=b"a"),  # succeeded although a is gone
    ]
    assert first_violation(ops, DirectoryModel()) == b"/d"


def test_history_round_trips_through_its_dump() -> None:
    ops = [
        op("cas", 0, PENDING, expected=None, value=b"\x00\xff"),
        op("get", 1, 2, output=True),
        listing(3, 4, b"x", b"y"),
    ]
    assert load_operations(dump_operations(ops)) == ops


def test_recorder_keeps_invocation_and_completion() -> None:
    ticks = iter(range(100))
    history = History(lambda: float(next(ticks)))
    first = history.invoke(1, "put", b"k", b"v")
    second = history.invoke(2, "get", b"k")
    history.complete(second, b"v")
    recorded = history.operations()
    assert recorded[0].response == PENDING and not recorded[0].answered
    assert (recorded[1].invoke, recorded[1].response, recorded[1].output) == (1.0, 2.0, b"v")
    assert first == 0


def versions(*attempts: tuple[bytes, bool]) -> FileVersions:
    recorded = FileVersions()
    for content, acked in attempts:
        index = recorded.attempt(content)
        if acked:
            recorded.acknowledge(index)
    return recorded


def test_acknowledged_file_must_survive_byte_for_byte() -> None:
    files = {"a": versions((b"one", True)), "b": versions((b"two", True)),
             "c": versions((b"never acked", False))}
    assert lost_acknowledged(files, {"a": b"one", "b": b"two", "c": None}) == []
    lost = lost_acknowledged(files, {"a": b"onf", "b": None, "c": None})
    assert lost == ["a: 3 bytes of no acknowledged version", "b: missing"]


def test_overwritten_file_keeps_its_last_acknowledged_version_or_a_later_one() -> None:
    files = {"f": versions((b"v1", True), (b"v2", True), (b"v3", False))}
    assert lost_acknowledged(files, {"f": b"v2"}) == []
    assert lost_acknowledged(files, {"f": b"v3"}) == []
    assert lost_acknowledged(files, {"f": b"v1"}) == ["f: 2 bytes of no acknowledged version"]


def test_read_mixing_two_versions_is_caught() -> None:
    files = {"f": versions((b"AAAA", True), (b"BBBB", False))}
    assert mixed_reads(files, [("f", b"AAAA"), ("f", b"BBBB"), ("f", b"")]) == []
    assert mixed_reads(files, [("f", b"AABB")]) == ["f: read 4 bytes matching no single version"]
