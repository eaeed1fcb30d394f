"""The exactly-once session table: many requests in flight, the acknowledged
watermark, retries answered with the first answer, deterministic expiry with a new
leader's grace period, ESTALE, session_closed, and the codecs."""

from __future__ import annotations

import errno

import pytest

from dfs.paxos.kv import Get, KvMachine, Put
from dfs.paxos.kv import decode_result as decode_kv
from dfs.paxos.kv import encode_command as encode_kv
from dfs.paxos.machine import ApplyContext
from dfs.paxos.planted import PlantedBug
from dfs.paxos.sessions import (
    OK,
    CloseSession,
    KeepAlive,
    OpenSession,
    SessionCommand,
    SessionRequest,
    SessionResult,
    SessionTable,
    Tick,
    decode_command,
    decode_result,
    encode_command,
)

SECOND = 10**9
TIMEOUT = 10 * SECOND


class RecordingKv(KvMachine):
    """KV that records what the session layer passes through."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[tuple[bytes, ApplyContext]] = []
        self.closed: list[int] = []

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        self.applied.append((command, ctx))
        return super().apply(command, ctx)

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        self.closed.append(session)


class Harness:
    def __init__(self, planted: frozenset[PlantedBug] = frozenset()) -> None:
        self.kv = RecordingKv()
        self.table = SessionTable(self.kv, TIMEOUT, planted)
        self.slot = 0

    def run(self, command: SessionCommand) -> SessionResult:
        self.slot += 1
        raw = self.table.apply(encode_command(command), ApplyContext(self.slot, 0, 0, 0))
        return decode_result(raw)

    def open(self, time_ns: int) -> int:
        result = self.run(OpenSession(time_ns))
        assert result.status == OK
        return int.from_bytes(result.payload, "big")

    def put(self, session: int, seq: int, acked: int, time_ns: int, value: bytes) -> SessionResult:
        payload = encode_kv(Put(b"k", value))
        return self.run(SessionRequest(session, seq, acked, time_ns, payload))


def test_many_in_flight_and_retries_get_the_first_answer() -> None:
    h = Harness()
    session = h.open(0)
    answers = [h.put(session, seq, 0, seq, b"v%d" % seq) for seq in (1, 2, 3)]
    assert all(a.status == OK for a in answers)
    # A retry of seq 2 (after a leader change, say) is answered, not applied again.
    retry = h.put(session, 2, 0, 10, b"v2")
    assert retry == answers[1]
    assert len(h.kv.applied) == 3
    # The inner machine saw state time and the session in its context.
    assert [ctx.session for _, ctx in h.kv.applied] == [session] * 3
    assert [ctx.time_ns for _, ctx in h.kv.applied] == [1, 2, 3]


def test_watermark_drops_answers_below_it() -> None:
    h = Harness()
    session = h.open(0)
    for seq in (1, 2, 3):
        h.put(session, seq, 0, 0, b"x")
    h.put(session, 4, 2, 0, b"y")  # the client has every answer up to 2
    assert h.put(session, 2, 2, 0, b"x").status == errno.EALREADY
    assert h.put(session, 3, 2, 0, b"x").status == OK  # still kept
    assert len(h.kv.applied) == 4


def test_planted_bug_applies_a_retry_twice() -> None:
    h = Harness(frozenset({PlantedBug.APPLY_RETRY_TWICE}))
    session = h.open(0)
    h.put(session, 1, 0, 0, b"x")
    h.put(session, 1, 0, 0, b"x")
    assert len(h.kv.applied) == 2


def test_expiry_is_judged_at_ticks_in_state_time() -> None:
    h = Harness()
    h.run(Tick(0, 1, 1))
    idle = h.open(1)
    busy = h.open(1)
    h.run(Tick(5 * SECOND, 1, 1))
    h.put(busy, 1, 0, 8 * SECOND, b"x")
    # State time 11 s: idle (last active at 1 ns) is past the 10 s timeout.
    h.run(Tick(11 * SECOND, 1, 1))
    assert h.table.live_sessions() == [busy]
    assert h.kv.closed == [idle]
    assert h.put(idle, 1, 0, 12 * SECOND, b"y").status == errno.ESTALE
    assert h.run(KeepAlive(idle, 12 * SECOND)).status == errno.ESTALE


def test_state_time_never_runs_backwards() -> None:
    h = Harness()
    h.run(Tick(50 * SECOND, 1, 1))
    h.run(Tick(3 * SECOND, 1, 1))  # a leader with a slow clock
    assert h.table.state_time_ns == 50 * SECOND


def test_new_leader_gives_every_session_a_full_timeout() -> None:
    h = Harness()
    h.run(Tick(0, 1, 1))
    session = h.open(0)
    # No leader for a long while; a new one's first tick comes at 100 s.
    h.run(Tick(100 * SECOND, 2, 3))
    assert h.table.live_sessions() == [session]  # grace, not expiry
    h.run(Tick(105 * SECOND, 2, 3))
    assert h.table.live_sessions() == [session]
    h.run(Tick(111 * SECOND, 2, 3))
    assert h.table.live_sessions() == []
    assert h.kv.closed == [session]


def test_close_calls_session_closed() -> None:
    h = Harness()
    session = h.open(0)
    assert h.run(CloseSession(session, 1)).status == OK
    assert h.kv.closed == [session]
    assert h.put(session, 1, 0, 2, b"x").status == errno.ESTALE


def test_malformed_commands_change_nothing() -> None:
    h = Harness()
    before = h.table.snapshot()
    raw = h.table.apply(b"\x09garbage", ApplyContext(1, 0, 0, 0))
    assert decode_result(raw).status == errno.EINVAL
    session = h.open(0)
    bad = h.run(SessionRequest(session, 1, 0, 0, b"\x07"))
    assert bad.status == errno.EINVAL
    assert before != h.table.snapshot()  # only the open changed it
    assert h.kv.snapshot() == KvMachine().snapshot()


@pytest.mark.parametrize(
    "command",
    [
        OpenSession(5),
        SessionRequest(1, 2, 1, 99, b"payload"),
        KeepAlive(3, 4),
        CloseSession(3, 4),
        Tick(7, 8, 9),
    ],
)
def test_command_codec_round_trips(command: SessionCommand) -> None:
    assert decode_command(encode_command(command)) == command


def test_snapshot_restores_sessions_answers_and_inner_state() -> None:
    h = Harness()
    h.run(Tick(0, 4, 2))
    session = h.open(0)
    first = h.put(session, 1, 0, 1, b"v1")
    copy = SessionTable(KvMachine(), TIMEOUT)
    copy.restore(h.table.snapshot())
    assert copy.snapshot() == h.table.snapshot()
    again = copy.apply(
        encode_command(SessionRequest(session, 1, 0, 2, encode_kv(Put(b"k", b"v1")))),
        ApplyContext(9, 0, 0, 0),
    )
    assert decode_result(again) == first
    inner = copy.inner
    assert isinstance(inner, KvMachine)
    assert decode_kv(inner.query(encode_kv(Get(b"k")))).value == b"v1"
