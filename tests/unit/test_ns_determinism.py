"""Determinism: one command log applied twice gives byte-identical snapshots and
results; snapshot -> restore -> identical state, at any point of the log; the codec
round-trips every record and refuses what no encoder made."""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfs.meta import codec, snapshot
from dfs.meta.ops import (
    COMMAND_TYPES,
    QUERY_TYPES,
    RegisterData,
    ReleaseOrphans,
    ReportUsage,
    SetOpenInodes,
)
from dfs.meta.results import RESULT_TYPES, ErrnoResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.paxos.machine import ApplyContext
from tests.posix.ns_target import NamespaceTarget
from tests.posix.vocab import Creds

CALLERS = [Creds(0, 0), Creds(1000, 1000, (2000,)), Creds(1001, 1001)]
PATHS = ["a", "b", "c", "a/a", "a/b", "b/c", "c/a"]
MODES = ["0755", "0644", "0777", "01777", "02775", "04755", "0"]


def _random_log(seed: int, steps: int) -> NamespaceTarget:
    """Drives a NamespaceTarget with random operations; its `log` is the command log."""
    rng = random.Random(seed)
    target = NamespaceTarget(block_size=256)
    target.reset(Creds(0, 0), 0o777)
    # A file the random steps never name, so some chunks stay referenced to the end.
    target.run(Creds(0, 0), "create", ["kept", "0644"])
    target.run(Creds(0, 0), "write", ["kept", "100", "1000"])
    operations = [
        lambda: ("mkdir", [rng.choice(PATHS), rng.choice(MODES)]),
        lambda: ("create", [rng.choice(PATHS), rng.choice(MODES)]),
        lambda: ("mknod", [rng.choice(PATHS), "fifo", "0644", "0"]),
        lambda: ("symlink", [rng.choice(PATHS), rng.choice(PATHS)]),
        lambda: ("link", [rng.choice(PATHS), rng.choice(PATHS)]),
        lambda: ("unlink", [rng.choice(PATHS)]),
        lambda: ("rmdir", [rng.choice(PATHS)]),
        lambda: (
            "renameat2",
            [rng.choice(PATHS), rng.choice(PATHS), rng.choice(["0", "EXCHANGE"])],
        ),
        lambda: ("chmod", [rng.choice(PATHS), rng.choice(MODES)]),
        lambda: (
            "chown",
            [rng.choice(PATHS), rng.choice(["1000", "-1"]), rng.choice(["2000", "-1"])],
        ),
        lambda: ("truncate", [rng.choice(PATHS), str(rng.randrange(0, 2000))]),
        lambda: (
            "write",
            [rng.choice(PATHS), str(rng.randrange(0, 1500)), str(rng.randrange(1, 700))],
        ),
        lambda: ("utimensat", [rng.choice(PATHS), rng.choice(["now", "5"]), "now"]),
        lambda: ("setxattr", [rng.choice(PATHS), rng.choice(["user.a", "user.b"]), "v", "0"]),
        lambda: ("removexattr", [rng.choice(PATHS), "user.a"]),
    ]
    for step in range(steps):
        op, args = rng.choice(operations)()
        target.run(rng.choice(CALLERS), op, args)
        if step % 50 == 0:
            target.command(RegisterData(step + 1, f"host{step}:7000", 1, f"rack{step % 3}"))
            target.command(ReportUsage(step + 1, 1 << 30, step))
            target.command(SetOpenInodes(session=9, inodes=tuple(range(2, 2 + step % 7))))
        if step % 70 == 0:
            target.command(ReleaseOrphans(target.clock_ns))
    return target


def _replay(
    log: list[tuple[bytes, ApplyContext]], block_size: int = 256
) -> tuple[NamespaceMachine, list[bytes]]:
    machine = NamespaceMachine(block_size)
    results = [machine.apply(command, ctx) for command, ctx in log]
    return machine, results


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_log_applied_twice_gives_identical_snapshots_and_results(seed: int) -> None:
    log = _random_log(seed, 600).log
    first, first_results = _replay(log)
    second, second_results = _replay(log)
    assert first_results == second_results
    assert first.snapshot() == second.snapshot()
    # The log did real work, not 600 errors.
    successes = sum(
        1 for result in first_results if getattr(codec.decode_result(result), "errno", 0) == 0
    )
    assert successes > len(log) // 4
    chunks = first.state.chunks
    assert len(first.state.inodes) > 3 and chunks.refs


@pytest.mark.parametrize("seed", [4, 5])
def test_snapshot_restore_is_identity_at_every_point(seed: int) -> None:
    log = _random_log(seed, 400).log
    whole, _ = _replay(log)
    for cut in (0, 1, len(log) // 3, len(log) // 2, len(log) - 1):
        head, _ = _replay(log[:cut])
        image = head.snapshot()
        restored = NamespaceMachine()
        restored.restore(image)
        assert restored.snapshot() == image
        # Continuing from the restored state ends where the uninterrupted run ended.
        tail_results = [restored.apply(command, ctx) for command, ctx in log[cut:]]
        assert restored.snapshot() == whole.snapshot()
        assert tail_results == _replay(log)[1][cut:]


def test_undecodable_command_changes_nothing() -> None:
    machine = NamespaceMachine()
    before = machine.snapshot()
    ctx = ApplyContext(1, 0, 5, 1)
    for garbage in (b"", b"\xff\xff\xff", b"\x01", codec.encode_command(ReleaseOrphans(3)) + b"x"):
        answer = codec.decode_result(machine.apply(garbage, ctx))
        assert answer == ErrnoResult(errno.EINVAL)
    assert machine.snapshot() == before


def test_snapshot_refuses_foreign_and_damaged_bytes() -> None:
    image = _random_log(6, 100).machine.snapshot()
    for damaged in (
        b"",
        b"XXXXX" + image[5:],
        image[:-1],
        image + b"\0",
        image[:5] + b"\x09\x00" + image[7:],
    ):
        with pytest.raises(snapshot.SnapshotError):
            NamespaceMachine().restore(damaged)


records = st.one_of(*(st.from_type(cls) for cls in COMMAND_TYPES + QUERY_TYPES + RESULT_TYPES))


@settings(max_examples=300, deadline=None)
@given(records)
def test_codec_round_trips_every_record(record: object) -> None:
    if type(record) in COMMAND_TYPES:
        data = codec.encode_command(record)  # type: ignore[arg-type]
        assert codec.decode_command(data) == record
        assert codec.encode_command(codec.decode_command(data)) == data
    elif type(record) in QUERY_TYPES:
        data = codec.encode_query(record)  # type: ignore[arg-type]
        assert codec.decode_query(data) == record
    else:
        data = codec.encode_result(record)  # type: ignore[arg-type]
        assert codec.decode_result(data) == record
    for cut in range(len(data)):
        try:
            decoded = codec.decode_command(data[:cut])
        except codec.CodecError:
            continue
        assert codec.encode_command(decoded) == data[:cut]


commands = st.one_of(*(st.from_type(cls) for cls in COMMAND_TYPES))


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=8), st.integers(0, 3))
def test_arbitrary_commands_never_raise_and_stay_snapshottable(
    batch: list[object], session: int
) -> None:
    target = NamespaceTarget(block_size=256)
    target.reset(Creds(0, 0), 0o777)
    target.run(Creds(0, 0), "mkdir", ["d", "0777"])
    target.run(Creds(0, 0), "create", ["d/f", "0666"])
    target.run(Creds(0, 0), "write", ["d/f", "0", "300"])
    machine = target.machine
    for number, command in enumerate(batch):
        ctx = ApplyContext(100 + number, 0, 10**18 + number, session)
        answer = codec.decode_result(machine.apply(codec.encode_command(command), ctx))  # type: ignore[arg-type]
        assert isinstance(answer, RESULT_TYPES)
    image = machine.snapshot()
    restored = NamespaceMachine()
    restored.restore(image)
    assert restored.snapshot() == image


@pytest.mark.parametrize("seed", [7, 8])
def test_snapshot_written_in_steps_while_commands_apply_is_the_state_at_its_start(
    seed: int,
) -> None:
    log = _random_log(seed, 500).log
    final = _replay(log)[0].snapshot()
    for cut in (0, len(log) // 3, len(log) // 2):
        expected = _replay(log[:cut])[0].snapshot()
        machine, _ = _replay(log[:cut])
        machine.begin_snapshot()
        for number, (command, ctx) in enumerate(log[cut:]):
            machine.apply(command, ctx)
            if number % 3 == 0:
                machine.snapshot_step(2)
        assert machine.finish_snapshot() == expected
        assert machine.snapshot() == final  # writing it changed nothing
