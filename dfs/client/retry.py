"""Calls to the metadata leader that survive leader changes, inside a deadline.

Follows UNAVAILABLE redirects to the named leader, moves to the next member
when one does not answer, and backs off when nobody leads yet. The caller's
request object is resent unchanged, so a mutation keeps its sequence number
and the server's session table answers a retry with the first answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from dfs.auth import ClusterSecret, aio_channel
from dfs.client.leader import LeaderTracker, leader_hint

log = logging.getLogger(__name__)
T = TypeVar("T")

# A member that is down, partitioned, or not (yet) the leader.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


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


DEFAULT_POLICY = RetryPolicy()


class LeaderUnavailable(Exception):
    """No leader answered within the deadline."""


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

    def channel(self, addr: str) -> grpc.aio.Channel:
        if addr not in self._channels:
            self._channels[addr] = aio_channel(addr, self.secret)
        return self._channels[addr]

    async def call(
        self,
        attempt: Callable[[grpc.aio.Channel, float], Awaitable[T]],
        deadline_s: float | None = None,
    ) -> T:
        """Run `attempt(channel, timeout_s)` against the leader until it succeeds.

        Non-retryable gRPC errors are raised at once; retryable ones are
        retried until the deadline, then LeaderUnavailable is raised.
        """
        deadline = time.monotonic() + (deadline_s or self.policy.deadline_s)
        backoff = self.policy.backoff_initial_s
        last_error: grpc.RpcError | None = None
        failed_at: dict[str, float] = {}
        while (remaining := deadline - time.monotonic()) > 0:
            addr = self.tracker.current()
            try:
                return await attempt(
                    self.channel(addr), min(self.policy.attempt_timeout_s, remaining)
                )
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE_CODES:
                    raise
                last_error = err
                hint = leader_hint(err)
                now = time.monotonic()
                if hint is None or hint == addr:
                    failed_at[addr] = now
                if hint and now - failed_at.get(hint, -1e9) < self.policy.distrust_failed_s:
                    hint = None
                if hint and hint != addr:
                    log.debug("%s redirects to leader %s", addr, hint)
                    self.tracker.follow(hint)
                    continue
                self.tracker.skip(addr)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, self.policy.backoff_max_s)
        detail = f": {last_error.code().name} {last_error.details()}" if last_error else ""
        raise LeaderUnavailable(f"no metadata leader answered in time{detail}")

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
