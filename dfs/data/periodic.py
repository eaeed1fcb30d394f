"""The loop every background job of a data server runs in: a pass, a pause, again,
until the server stops; a pass that loses the metadata leader or a peer is logged
and tried again next time, never fatal.

Owns the pacing of passes only; the jobs own what a pass does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc.aio

from dfs.client.retry import LeaderUnavailable

log = logging.getLogger(__name__)


async def every(interval_s: float, one_pass: Callable[[], Awaitable[object]],
                stop: asyncio.Event, what: str, wake: asyncio.Event | None = None,
                first_pass_now: bool = False) -> None:
    """Run one_pass every interval_s (sooner when `wake` is set) until `stop`."""
    if first_pass_now:
        await _guarded(one_pass, what)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((wake or stop).wait(), interval_s)
        if wake is not None:
            wake.clear()
        if stop.is_set():
            return
        await _guarded(one_pass, what)


async def _guarded(one_pass: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await one_pass()
    except (LeaderUnavailable, grpc.aio.AioRpcError) as err:
        log.warning("%s pass stopped: %s", what, err)
