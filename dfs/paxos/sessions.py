"""Exactly-once client sessions as a generic layer in front of any StateMachine.

Owns the session table (every answer above each client's acknowledged watermark),
state time, deterministic expiry judged at leader-proposed ticks with a new
leader's grace period, and the byte encodings of its commands, results and
snapshot. Never reads a clock: every time is a leader's stamp inside a command.
"""

from __future__ import annotations

import errno
import logging
import struct
from dataclasses import dataclass, field

from dfs.paxos.machine import ApplyContext, StateMachine
from dfs.paxos.planted import PlantedBug

log = logging.getLogger(__name__)

OK = 0
_OPEN, _REQUEST, _KEEPALIVE, _CLOSE, _TICK = 1, 2, 3, 4, 5
_OPEN_S = struct.Struct(">Bq")
_REQUEST_S = struct.Struct(">BQQQq")
_SESSION_S = struct.Struct(">BQq")
_TICK_S = struct.Struct(">BqQI")
_RESULT_S = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_SNAPSHOT_VERSION = 1
_SNAP_HEAD = struct.Struct(">BqQQIQ")
_SNAP_SESSION = struct.Struct(">QqQI")
_SNAP_ANSWER = struct.Struct(">QI")


@dataclass(frozen=True, slots=True)
class OpenSession:
    time_ns: int  # leader's stamp


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A mutation: `acked` is the client's watermark (all answers <= it received)."""

    session: int
    sequence: int
    acked: int
    time_ns: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class KeepAlive:
    session: int
    time_ns: int


@dataclass(frozen=True, slots=True)
class CloseSession:
    session: int
    time_ns: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Proposed by the leader periodically, idle or not; names the leadership."""

    time_ns: int
    leader_round: int
    leader_node: int


SessionCommand = OpenSession | SessionRequest | KeepAlive | CloseSession | Tick


@dataclass(frozen=True, slots=True)
class SessionResult:
    status: int  # OK or an errno value (ESTALE: the session is gone)
    payload: bytes = b""


def encode_command(command: SessionCommand) -> bytes:
    if isinstance(command, OpenSession):
        return _OPEN_S.pack(_OPEN, command.time_ns)
    if isinstance(command, SessionRequest):
        head = _REQUEST_S.pack(
            _REQUEST, command.session, command.sequence, command.acked, command.time_ns
        )
        return head + command.payload
    if isinstance(command, KeepAlive):
        return _SESSION_S.pack(_KEEPALIVE, command.session, command.time_ns)
    if isinstance(command, CloseSession):
        return _SESSION_S.pack(_CLOSE, command.session, command.time_ns)
    return _TICK_S.pack(_TICK, command.time_ns, command.leader_round, command.leader_node)


def decode_command(data: bytes) -> SessionCommand:
    """Raises ValueError on a malformed command."""
    try:
        kind = data[0]
        if kind == _OPEN and len(data) == _OPEN_S.size:
            return OpenSession(_OPEN_S.unpack(data)[1])
        if kind == _REQUEST and len(data) >= _REQUEST_S.size:
            _, session, sequence, acked, time_ns = _REQUEST_S.unpack_from(data)
            return SessionRequest(session, sequence, acked, time_ns, data[_REQUEST_S.size :])
        if kind in (_KEEPALIVE, _CLOSE) and len(data) == _SESSION_S.size:
            _, session, time_ns = _SESSION_S.unpack(data)
            return (
                KeepAlive(session, time_ns)
                if kind == _KEEPALIVE
                else CloseSession(session, time_ns)
            )
        if kind == _TICK and len(data) == _TICK_S.size:
            _, time_ns, leader_round, leader_node = _TICK_S.unpack(data)
            return Tick(time_ns, leader_round, leader_node)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed session command: {exc}") from exc
    raise ValueError("malformed session command")


def encode_result(result: SessionResult) -> bytes:
    return _RESULT_S.pack(result.status) + result.payload


def decode_result(data: bytes) -> SessionResult:
    return SessionResult(_RESULT_S.unpack_from(data)[0], data[_RESULT_S.size :])


@dataclass(slots=True)
class _Session:
    last_active_ns: int
    acked: int = 0  # the client's watermark: answers <= it are dropped
    answers: dict[int, bytes] = field(default_factory=dict)  # sequence -> encoded result


class SessionTable:
    """A StateMachine wrapping `inner`: feed it session commands (see encode_command)."""

    def __init__(
        self,
        inner: StateMachine,
        timeout_ns: int,
        planted: frozenset[PlantedBug] = frozenset(),  # test-only
    ) -> None:
        self.inner = inner
        self.timeout_ns = timeout_ns
        self._planted = planted
        self._sessions: dict[int, _Session] = {}
        self._next_session = 1
        self._state_time_ns = 0
        self._leader: tuple[int, int] = (0, 0)  # leadership of the last tick

    @property
    def state_time_ns(self) -> int:
        return self._state_time_ns

    def live_sessions(self) -> list[int]:
        return sorted(self._sessions)

    def last_active_ns(self) -> dict[int, int]:
        """Each live session's last command or keepalive, in the log's time."""
        return {session_id: s.last_active_ns for session_id, s in self._sessions.items()}

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes:
        try:
            decoded = decode_command(command)
        except ValueError:
            return encode_result(SessionResult(errno.EINVAL))
        self._state_time_ns = max(self._state_time_ns, decoded.time_ns)
        return encode_result(self._apply(decoded, ctx))

    def _ctx(self, ctx: ApplyContext, session: int) -> ApplyContext:
        return ApplyContext(ctx.slot, ctx.index, self._state_time_ns, session)

    def _apply(self, command: SessionCommand, ctx: ApplyContext) -> SessionResult:
        if isinstance(command, Tick):
            self._tick(command, ctx)
            return SessionResult(OK)
        if isinstance(command, OpenSession):
            session_id = self._next_session
            self._next_session += 1
            self._sessions[session_id] = _Session(self._state_time_ns)
            return SessionResult(OK, _U64.pack(session_id))
        session = self._sessions.get(command.session)
        if session is None:
            return SessionResult(errno.ESTALE)
        session.last_active_ns = self._state_time_ns
        if isinstance(command, KeepAlive):
            return SessionResult(OK)
        if isinstance(command, CloseSession):
            self._close(command.session, ctx)
            return SessionResult(OK)
        return self._request(session, command, ctx)

    def _request(
        self, session: _Session, command: SessionRequest, ctx: ApplyContext
    ) -> SessionResult:
        if command.acked > session.acked:
            for sequence in [s for s in session.answers if s <= command.acked]:
                del session.answers[sequence]
            session.acked = command.acked
        first_answer = session.answers.get(command.sequence)
        if first_answer is not None and PlantedBug.APPLY_RETRY_TWICE not in self._planted:
            return SessionResult(OK, first_answer)
        if command.sequence <= session.acked:
            # The client already received this answer and let us drop it.
            return SessionResult(errno.EALREADY)
        try:
            answer = self.inner.apply(command.payload, self._ctx(ctx, command.session))
        except ValueError:
            return SessionResult(errno.EINVAL)
        session.answers[command.sequence] = answer
        return SessionResult(OK, answer)

    def _tick(self, tick: Tick, ctx: ApplyContext) -> None:
        leadership = (tick.leader_round, tick.leader_node)
        if leadership != self._leader:
            # Grace period: a new leader's first tick gives every live session a full
            # timeout, whatever happened to time while there was no leader.
            self._leader = leadership
            for session in self._sessions.values():
                session.last_active_ns = self._state_time_ns
            return
        deadline = self._state_time_ns - self.timeout_ns
        for session_id in sorted(self._sessions):
            if self._sessions[session_id].last_active_ns < deadline:
                log.debug("session %s expired at %s", session_id, self._state_time_ns)
                self._close(session_id, ctx)

    def _close(self, session_id: int, ctx: ApplyContext) -> None:
        del self._sessions[session_id]
        self.inner.session_closed(session_id, self._ctx(ctx, session_id))

    def session_closed(self, session: int, ctx: ApplyContext) -> None:
        """Nothing wraps a session table, so nothing ever calls this."""

    def snapshot(self) -> bytes:
        return self.join_snapshot(self.snapshot_head(), self.inner.snapshot())

    def snapshot_head(self) -> bytes:
        """The table's own part of a snapshot, without the wrapped machine's, so a
        caller can snapshot that one in steps and join them (join_snapshot)."""
        parts = [
            _SNAP_HEAD.pack(
                _SNAPSHOT_VERSION,
                self._state_time_ns,
                self._next_session,
                self._leader[0],
                self._leader[1],
                len(self._sessions),
            )
        ]
        for session_id in sorted(self._sessions):
            session = self._sessions[session_id]
            parts.append(
                _SNAP_SESSION.pack(
                    session_id, session.last_active_ns, session.acked, len(session.answers)
                )
            )
            for sequence in sorted(session.answers):
                answer = session.answers[sequence]
                parts.append(_SNAP_ANSWER.pack(sequence, len(answer)))
                parts.append(answer)
        return b"".join(parts)

    @staticmethod
    def join_snapshot(head: bytes, *inner_parts: bytes | bytearray) -> bytes:
        """The table's snapshot around the inner machine's, given in parts: one copy
        of the whole (tens of MB at scale), not one per layer."""
        length = sum(len(part) for part in inner_parts)
        return b"".join([head, _U64.pack(length), *inner_parts])

    def restore(self, data: bytes) -> None:
        version, time_ns, next_session, round_, node, count = _SNAP_HEAD.unpack_from(data)
        if version != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown session snapshot version {version}")
        offset = _SNAP_HEAD.size
        sessions: dict[int, _Session] = {}
        for _ in range(count):
            session_id, last_active, acked, answers = _SNAP_SESSION.unpack_from(data, offset)
            offset += _SNAP_SESSION.size
            session = _Session(last_active, acked)
            for _ in range(answers):
                sequence, length = _SNAP_ANSWER.unpack_from(data, offset)
                offset += _SNAP_ANSWER.size
                session.answers[sequence] = bytes(data[offset : offset + length])
                offset += length
            sessions[session_id] = session
        (inner_length,) = _U64.unpack_from(data, offset)
        offset += 8
        self.inner.restore(bytes(data[offset : offset + inner_length]))
        self._sessions = sessions
        self._next_session = next_session
        self._state_time_ns = time_ns
        self._leader = (round_, node)
