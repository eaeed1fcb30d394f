"""The KV state machine: Put, Get, CAS, codecs and snapshots."""

from __future__ import annotations

import pytest

from dfs.paxos.kv import (
    Cas,
    Get,
    KvMachine,
    KvResult,
    Put,
    SnapshotEncoder,
    decode_command,
    decode_result,
    encode_command,
)
from dfs.paxos.machine import ApplyContext

CTX = ApplyContext(slot=1, index=0, time_ns=0, session=0)


def run(machine: KvMachine, command: Put | Get | Cas) -> KvResult:
    return decode_result(machine.apply(encode_command(command), CTX))


def test_put_get_cas() -> None:
    kv = KvMachine()
    assert run(kv, Get(b"k")) == KvResult(False, None)
    assert run(kv, Cas(b"k", None, b"1")).ok
    assert run(kv, Get(b"k")) == KvResult(True, b"1")
    assert run(kv, Cas(b"k", b"0", b"2")) == KvResult(False, b"1")
    assert run(kv, Put(b"k", b"3")).ok
    assert run(kv, Cas(b"k", b"3", b"4")).ok
    assert decode_result(kv.query(encode_command(Get(b"k")))).value == b"4"


@pytest.mark.parametrize(
    "command", [Put(b"a", b""), Get(b"\x00\xff"), Cas(b"a", None, b"x"), Cas(b"a", b"y", b"z")]
)
def test_command_codec_round_trips(command: Put | Get | Cas) -> None:
    assert decode_command(encode_command(command)) == command


def test_malformed_commands_are_refused_without_change() -> None:
    kv = KvMachine()
    with pytest.raises(ValueError):
        kv.apply(b"\x01\x00", CTX)
    with pytest.raises(ValueError):
        kv.query(encode_command(Put(b"a", b"b")))
    assert kv.snapshot() == KvMachine().snapshot()


def test_snapshot_restores_the_same_state() -> None:
    kv = KvMachine()
    for i in range(5):
        run(kv, Put(b"k%d" % i, b"v%d" % i))
    other = KvMachine()
    other.restore(kv.snapshot())
    assert other.snapshot() == kv.snapshot()
    assert run(other, Get(b"k3")).value == b"v3"


@pytest.mark.parametrize("step_keys", [1, 3, 7, 50, 1000])
def test_stepped_snapshot_equals_one_sort_and_no_step_exceeds_its_keys(step_keys: int) -> None:
    """Keys inserted in an order unlike their sorted order, as on a replica that never
    restarted: runs sorted and merged give the same bytes as a restored replica's."""
    kv = KvMachine()
    for i in (37, 2, 99, 14, 0, 63, 5, 81, 20, 48, 71, 9) * 3:
        run(kv, Put(b"k%03d" % i, b"v%d" % i))
    restored = KvMachine()
    restored.restore(kv.snapshot())
    encoder = SnapshotEncoder(kv.snapshot_copy())
    run(kv, Put(b"k000", b"changed after the copy"))  # later commands do not leak in
    steps = 0
    while not encoder.step(step_keys):
        steps += 1
        assert steps <= 2 * 12 // step_keys + 4, "steps must each do real work"
    assert encoder.finish() == restored.snapshot()
    empty = SnapshotEncoder({})
    assert empty.step(step_keys) and empty.finish() == KvMachine().snapshot()
