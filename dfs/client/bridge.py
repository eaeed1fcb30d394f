"""Run grpc.aio calls from trio code: one asyncio loop thread, no thread per call.

pyfuse3 runs on trio; grpc.aio runs on asyncio. The bridge owns one asyncio
event loop in a daemon thread; a trio task submits a coroutine to it and
sleeps until the coroutine's future completes (woken through the trio token,
so no trio worker thread is held). A trio cancellation cancels the asyncio
task, which cancels the gRPC call. It decides nothing about what is called.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioBridge:
    """An asyncio loop on its own thread, awaitable from trio."""

    def __init__(self, name: str = "dfs-grpc") -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop thread (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Block the calling (non-loop) thread until `coro` finishes."""
        return self.submit(coro).result(timeout_s)

    async def call(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        """From trio: run `coro_fn()` on the loop thread and await its result.

        Cancelling the trio task cancels the asyncio task (and so the gRPC call).
        """
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        future = self.submit(_as_coroutine(coro_fn))
        aborted = False

        def wake() -> None:  # runs on the trio thread
            if not aborted:
                trio.lowlevel.reschedule(task)

        def done(_: concurrent.futures.Future[T]) -> None:  # runs on the loop thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(wake)

        future.add_done_callback(done)

        def abort(_: Callable[[], BaseException]) -> trio.lowlevel.Abort:
            nonlocal aborted
            aborted = True
            future.cancel()  # cancels the asyncio task, and through it the call
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return future.result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _as_coroutine(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return await coro_fn()
