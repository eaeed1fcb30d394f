#!/usr/bin/env python3
"""Mount a directory through a minimal pyfuse3 passthrough: the ceiling of a pyfuse3 client.

Runs in the foreground until SIGTERM or SIGINT, then unmounts. Its FUSE options and
entry/attribute timeouts are flags, so they can match what the dfs mount uses.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pyfuse3
import trio
from passthrough_ops import CacheTimeouts, Passthrough

# Defaults until the dfs mount exists; the integrator aligns them with it.
DEFAULT_ENTRY_TIMEOUT_S = 1.0
DEFAULT_ATTR_TIMEOUT_S = 1.0
FS_NAME = "passthrough"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mirror SOURCE at MOUNTPOINT through FUSE (pyfuse3), in the foreground; "
        "SIGTERM or SIGINT unmounts and exits.",
    )
    parser.add_argument("source", type=Path, help="the backing directory")
    parser.add_argument("mountpoint", type=Path, help="an empty directory to mount on")
    parser.add_argument("--entry-timeout", type=float, default=DEFAULT_ENTRY_TIMEOUT_S,
                        metavar="S", help="seconds the kernel caches a name lookup (default 1)")
    parser.add_argument("--attr-timeout", type=float, default=DEFAULT_ATTR_TIMEOUT_S,
                        metavar="S", help="seconds the kernel caches attributes (default 1)")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT",
                        help="extra FUSE mount option (repeatable), e.g. -o allow_other")
    parser.add_argument("--writeback-cache", action="store_true",
                        help="let the kernel buffer writes (FUSE write-back cache)")
    parser.add_argument("--no-keep-cache", action="store_true",
                        help="drop a file's cached pages at every open (default: keep them, "
                        "as the dfs mount does for files nobody else changed)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="most concurrent request tasks (pyfuse3's max_tasks)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a directory")
    if not args.mountpoint.is_dir():
        parser.error(f"{args.mountpoint} is not a directory")
    return args


def mount_options(extra: Sequence[str]) -> set[str]:
    return {*pyfuse3.default_options, f"fsname={FS_NAME}", "subtype=passthrough", *extra}


async def serve_until_signal(
    max_tasks: int | None, *also: Callable[[], Awaitable[None]]
) -> None:
    """pyfuse3's request loop, ended by SIGTERM/SIGINT or an external unmount; `also`
    runs beside it (e.g. a control socket) and is cancelled with it."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_terminate_on_signal)
        for task in also:
            nursery.start_soon(task)
        if max_tasks is None:
            await pyfuse3.main()
        else:
            await pyfuse3.main(max_tasks=max_tasks)
        nursery.cancel_scope.cancel()


async def _terminate_on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            pyfuse3.terminate()
            return


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The kernel has already applied the caller's umask to every mode it sends.
    os.umask(0)
    ops = Passthrough(
        os.fsencode(args.source.resolve()),
        CacheTimeouts(entry_s=args.entry_timeout, attr_s=args.attr_timeout),
        writeback_cache=args.writeback_cache,
        keep_cache=not args.no_keep_cache,
    )
    pyfuse3.init(ops, str(args.mountpoint), mount_options(args.options))
    try:
        trio.run(serve_until_signal, args.workers)
    finally:
        pyfuse3.close(unmount=True)
    print(f"passthrough: unmounted {args.mountpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
