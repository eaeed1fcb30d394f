"""Calls to the metadata leader that survive leader changes, inside a deadline.

Follows UNAVAILABLE redirects to the named leader. When the leader fails without
naming another, asks every other member at once (the same request) and goes to
whichever answers or names a leader. When the leader stays silent (a paused or cut
off process never answers at all), asks the others meanwhile whether they follow a
new leader, instead of waiting out the attempt's timeout. Backs off briefly when
nobody leads yet. The caller's request object is resent unchanged, so a mutation
keeps its sequence number and the server's session table answers a retry (or a
copy sent to a member that has just been elected) with the first answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import grpc
import grpc.aio

from dfs.auth import ClusterSecret, aio_channel
from dfs.client.leader import LeaderTracker, leader_hint

log = logging.getLogger(__name__)
T = TypeVar("T")

# A member that is down, partitioned, or not (yet) the leader.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Attempt = Callable[[grpc.aio.Channel, float], Awaitable[T]]


@dataclass(frozen=True)
class RetryPolicy:
    deadline_s: float = 30.0  # give up after this long in all
    attempt_timeout_s: float = 3.0  # one attempt on one member
    # Short waits: an election takes a few hundred ms and a client that backs
    # off further than that only adds to the failover time users see.
    backoff_initial_s: float = 0.01
    backoff_max_s: float = 0.05
    # A redirect to a member that failed this recently is stale news (the old
    # leader is gone and followers have not noticed yet): skip it instead.
    distrust_failed_s: float = 1.0
    # An attempt unanswered this long may be at a stopped leader: ask the other
    # members whether they follow a new one, again after ask_again_s, doubling.
    # Above a loaded leader's usual answer time; about when a replacement can have
    # been elected (election timeouts start at 0.3 s). Before this, each stuck call
    # waited out attempt_timeout_s.
    suspect_after_s: float = 0.4
    ask_again_s: float = 0.1


DEFAULT_POLICY = RetryPolicy()


class LeaderUnavailable(Exception):
    """No leader answered within the deadline."""


@dataclass
class Verdict(Generic[T]):
    """What asking the other members found: an answer to the request itself from the
    one that leads now, or the address of the leader they follow, or neither."""

    answered: bool = False
    answer: T | None = None
    leader: str | None = None


class _LeaderMoved(Exception):
    """The others follow a new leader; the tracker points at it already."""


class LeaderChannels:
    """One channel per metadata member and the retrying call loop over them."""

    def __init__(
        self,
        addrs: Iterable[str],
        secret: ClusterSecret | None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.tracker = LeaderTracker(addrs)
        self.secret = secret
        self.policy = policy
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._failed_at: dict[str, float] = {}  # members that failed a call, when
        # Set (and replaced) whenever the client moves to another leader: calls still
        # waiting at the old one move too instead of each finding out on its own.
        self._moved = asyncio.Event()

    def channel(self, addr: str) -> grpc.aio.Channel:
        if addr not in self._channels:
            self._channels[addr] = aio_channel(addr, self.secret)
        return self._channels[addr]

    async def call(self, attempt: Attempt[T], deadline_s: float | None = None) -> T:
        """Run `attempt(channel, timeout_s)` against the leader until it succeeds.

        Non-retryable gRPC errors are raised at once; retryable ones are
        retried until the deadline, then LeaderUnavailable is raised.
        """
        deadline = time.monotonic() + (deadline_s or self.policy.deadline_s)
        backoff = self.policy.backoff_initial_s
        last_error: grpc.RpcError | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            addr = self.tracker.current()
            timeout = min(self.policy.attempt_timeout_s, remaining)
            try:
                return await self._watched(attempt, addr, timeout)
            except _LeaderMoved:
                continue  # _watched follows the new leader
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE_CODES:
                    raise
                last_error = err
            named = leader_hint(last_error)
            if named is None or named == addr:
                self._failed_at[addr] = time.monotonic()  # down, or knows no leader
            hint = self._trusted_hint(last_error)
            if hint is not None and hint != addr:
                log.debug("%s redirects to leader %s", addr, hint)
                self._follow(hint)
                continue
            # No leader here: ask all the others at once, not one after another.
            verdict = await self._ask_others(attempt, addr, timeout)
            if verdict.leader is not None:
                self._follow(verdict.leader)
            if verdict.answered:
                return cast(T, verdict.answer)
            if verdict.leader is not None:
                continue
            self.tracker.skip(addr)
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, self.policy.backoff_max_s)
        detail = f": {last_error.code().name} {last_error.details()}" if last_error else ""
        raise LeaderUnavailable(f"no metadata leader answered in time{detail}")

    def _follow(self, leader: str) -> None:
        if leader != self.tracker.current():
            log.info("metadata leader: %s (was %s)", leader, self.tracker.current())
            self._moved.set()
            self._moved = asyncio.Event()
        self.tracker.follow(leader)

    def _trusted_hint(self, error: grpc.RpcError) -> str | None:
        """The leader a refusal names, unless that member itself failed just now."""
        hint = leader_hint(error)
        failed_at = self._failed_at.get(hint or "", -1e9)
        if hint and time.monotonic() - failed_at < self.policy.distrust_failed_s:
            return None
        return hint

    async def _watched(self, attempt: Attempt[T], addr: str, timeout: float) -> T:
        """The attempt at `addr`; while it stays unanswered, the other members are asked
        now and then whether someone else leads. Returns the first answer (the new
        leader's, when it got the request that way); _LeaderMoved when the others
        follow someone else."""
        primary = _spawn(attempt(self.channel(addr), timeout))
        moved = _spawn(self._moved.wait())
        asking: asyncio.Future[Verdict[T]] | None = None
        wait, rounds = self.policy.suspect_after_s, 0
        try:
            while True:
                watched: list[asyncio.Future[Any]] = [primary, moved]
                await asyncio.wait(watched, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if primary.done():
                    return primary.result()
                if moved.done():
                    if self.tracker.current() != addr:
                        raise _LeaderMoved  # another call found the new leader
                    moved = _spawn(self._moved.wait())
                    continue
                asking = _spawn(self._ask_others(attempt, addr, timeout))
                either: list[asyncio.Future[Any]] = [primary, asking]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if primary.done():
                    return primary.result()
                verdict = asking.result()
                if verdict.leader is not None:
                    log.info("%s did not answer; the others follow %s", addr, verdict.leader)
                    self._failed_at[addr] = time.monotonic()
                    self._follow(verdict.leader)
                if verdict.answered:
                    return cast(T, verdict.answer)
                if verdict.leader is not None:
                    raise _LeaderMoved
                rounds += 1
                wait = self.policy.ask_again_s * 2 ** (rounds - 1)
        finally:
            for task in (primary, moved, asking):
                if task is not None:
                    task.cancel()

    async def _ask_others(self, attempt: Attempt[T], addr: str, timeout: float) -> Verdict[T]:
        """Send the request to every member but `addr` at once. The first that answers
        leads (its answer is the call's); otherwise a trusted leader they name other
        than `addr`, once that one has answered too when it was asked (so a request
        is not sent to it twice). Raises a non-retryable error as the answer."""
        asks = {_spawn(attempt(self.channel(m), timeout)): m for m in self.tracker.others(addr)}
        pending: set[asyncio.Future[T]] = set(asks)
        refused: set[str] = set()
        named: str | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return Verdict(answered=True, answer=task.result(), leader=asks[task])
                    if not isinstance(error, grpc.aio.AioRpcError) or \
                            error.code() not in RETRYABLE_CODES:
                        raise error
                    refused.add(asks[task])
                    hint = self._trusted_hint(error)
                    named = hint if hint and hint != addr else named
                if named in refused:
                    named = None  # it refused the request itself: stale news
                if named is not None and named not in {asks[t] for t in pending}:
                    return Verdict(leader=named)
            return Verdict()
        finally:
            for task in asks:
                task.cancel()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _spawn(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    """A task whose outcome nobody may collect (a losing or cancelled attempt): its
    error is taken here, so asyncio does not report it as never retrieved."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(_collect)
    return task


def _collect(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
