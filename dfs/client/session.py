"""A client's exactly-once session: sequence numbers, the acknowledged watermark,
keepalives, and reopening after expiry.

Every mutation gets the next sequence number once and keeps it across retries.
The watermark W says "every answer up to W was received", so the server may
forget those answers; many requests can be in flight at once. The session is
generic: the service-specific calls are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionGrant:
    session: int
    timeout_ms: int


OpenFn = Callable[[], Awaitable[SessionGrant]]
KeepAliveFn = Callable[[int, int], Awaitable[int]]  # (session, acked) -> errno


class SessionExpired(Exception):
    """The server expired the session (ESTALE); in-flight mutations may be lost."""


class ClientSession:
    """Sequence numbering and keepalives for one session at a time."""

    def __init__(self, open_fn: OpenFn, keepalive_fn: KeepAliveFn) -> None:
        self._open_fn = open_fn
        self._keepalive_fn = keepalive_fn
        self.session = 0
        self.timeout_ms = 0
        self._next_sequence = 1
        self.acked = 0  # every answer with sequence <= acked has been received
        self._answered_above: set[int] = set()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._opening: asyncio.Lock = asyncio.Lock()

    async def open(self) -> None:
        grant = await self._open_fn()
        self.session, self.timeout_ms = grant.session, grant.timeout_ms
        self._next_sequence, self.acked = 1, 0
        self._answered_above.clear()
        log.info("session %d open (timeout %d ms)", self.session, self.timeout_ms)
        if self._keepalive_task is None:
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive_loop())

    async def reopen(self, expired_session: int) -> None:
        """Open a new session unless another caller already replaced `expired_session`."""
        async with self._opening:
            if self.session == expired_session:
                log.warning("session %d expired; opening a new one", expired_session)
                await self.open()

    def next_request(self) -> tuple[int, int, int]:
        """(session, sequence, acked) for a new mutation; keep it for every retry."""
        sequence = self._next_sequence
        self._next_sequence += 1
        return self.session, sequence, self.acked

    def answered(self, session: int, sequence: int) -> None:
        """The answer to `sequence` arrived: advance the watermark over the contiguous prefix."""
        if session != self.session or sequence <= self.acked:
            return
        self._answered_above.add(sequence)
        while self.acked + 1 in self._answered_above:
            self.acked += 1
            self._answered_above.discard(self.acked)

    async def _keepalive_loop(self) -> None:
        while True:
            # A third of the timeout leaves room for two lost keepalives.
            await asyncio.sleep(max(self.timeout_ms, 300) / 3000)
            session = self.session
            try:
                result = await self._keepalive_fn(session, self.acked)
            except Exception as err:  # the retry layer already tried hard; keep going
                log.warning("keepalive of session %d failed: %s", session, err)
                continue
            if result == errno.ESTALE:
                with contextlib.suppress(Exception):
                    await self.reopen(session)

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
            self._keepalive_task = None
