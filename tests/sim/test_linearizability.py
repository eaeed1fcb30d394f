"""The linearizability checker itself: it accepts what it must and rejects what it must."""

from __future__ import annotations

from tests.sim.linearizability import PENDING, Operation, check_history, check_register


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
