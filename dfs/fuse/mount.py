"""The `dfs mount` process: mount a cluster at a directory, in the foreground.

Owns the process around the FUSE session: which cluster (flags or cluster.json),
mount options, the gRPC loop thread, the client session, and a clean stop on
SIGTERM/SIGINT or an external unmount (buffered writes are flushed first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from dfs.auth import ClusterSecret, SecretError, secret_from_flags, tls_from_args
from dfs.client.bridge import AsyncioBridge
from dfs.client.data import FileData
from dfs.client.fs import FsClient
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.client.tuning import MIB, ClientTuning
from dfs.fuse.ops import DfsOperations, MountOptions
from dfs.logs import setup_logging
from dfs.metrics.collectors import ClientCacheCollector
from dfs.metrics.endpoint import MetricsBindError, expose, start_metrics_endpoint
from dfs.metrics.fuse import instrument_operations

log = logging.getLogger("dfs.mount")

# Options dfs handles itself (name -> MountOptions field in seconds, or ClientTuning
# field in bytes given as MiB, or a ClientTuning count or switch given as a whole
# number); everything else goes to the kernel as given.
MOUNT_OPTIONS = {
    "attr_timeout": "attr_timeout_s",
    "entry_timeout": "entry_timeout_s",
    "negative_timeout": "negative_timeout_s",
    "deadline": "request_deadline_s",
}
TUNING_OPTIONS = {
    "block_cache": "block_cache_bytes",
    "readahead": "readahead_bytes",
    "write_buffer": "write_buffer_bytes",
    "upload_at": "upload_bytes",
}
COUNT_OPTIONS = {
    "max_slices": "max_slices",
    "hedge_reads": "hedge_reads",
}


UNMOUNT_POLL_S = 1.0
MOUNTINFO = Path("/proc/self/mountinfo")


class MountError(Exception):
    """The mount cannot start: the message says why, in one line."""


def cluster_target(args: argparse.Namespace) -> tuple[list[str], ClusterSecret | None]:
    meta: list[str] = []
    secret_path = args.secret
    described: dict[str, Any] = {}
    if args.cluster:
        try:
            described = json.loads(Path(args.cluster).read_text())
        except (OSError, ValueError) as err:
            raise MountError(f"cannot read {args.cluster}: {err}") from err
        meta = [m["addr"] for m in described.get("meta", [])]
        secret_path = secret_path or described.get("secret")
    if args.meta:
        meta = [a.strip() for a in args.meta.split(",") if a.strip()]
    if not meta:
        raise MountError("give --meta HOST:PORT[,...] or --cluster DIR/cluster.json")
    try:
        tls = tls_from_args(args, described.get("tls"))
        return meta, secret_from_flags(secret_path, args.insecure, tls)
    except SecretError as err:
        raise MountError(str(err)) from err


def split_options(raw: list[str]) -> tuple[MountOptions, ClientTuning, set[str]]:
    ours: dict[str, float] = {}
    kernel: set[str] = set()
    squash = False
    for group in raw:
        for item in filter(None, (o.strip() for o in group.split(","))):
            key, _, value = item.partition("=")
            if item == "root_squash":
                squash = True
                continue
            if key not in MOUNT_OPTIONS | TUNING_OPTIONS | COUNT_OPTIONS:
                kernel.add(item)
                continue
            try:
                number = float(value)
            except ValueError:
                raise MountError(f"bad mount option value: {item}") from None
            if number < 0:
                raise MountError(f"bad mount option value: {item} (negative)")
            if key in COUNT_OPTIONS and not number.is_integer():
                raise MountError(f"bad mount option value: {item} (a whole number)")
            ours[key] = number
    options = MountOptions(**{MOUNT_OPTIONS[k]: v for k, v in ours.items()
                              if k in MOUNT_OPTIONS}, root_squash=squash)
    sizes = {TUNING_OPTIONS[k]: int(v * MIB) for k, v in ours.items() if k in TUNING_OPTIONS}
    counts = {COUNT_OPTIONS[k]: int(v) for k, v in ours.items() if k in COUNT_OPTIONS}
    tuning = ClientTuning(**sizes, **counts)
    return options, tuning, kernel


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, "mount")
    mountpoint = Path(args.mountpoint)
    try:
        if not mountpoint.is_dir():
            raise MountError(f"mount point {mountpoint} is not a directory")
        addrs, secret = cluster_target(args)
        options, tuning, kernel_options = split_options(args.options)
        if args.metrics:
            start_metrics_endpoint(args.metrics)
    except (MountError, MetricsBindError) as err:
        log.error("%s", err)
        return 2
    bridge = AsyncioBridge()
    meta = MetaClient(addrs, secret, RetryPolicy(deadline_s=options.request_deadline_s),
                      client_name=f"mount:{mountpoint.resolve()}")
    data = FileData(meta, secret, cache_bytes=tuning.block_cache_bytes,
                    max_slices=tuning.max_slices, hedge_reads=bool(tuning.hedge_reads))
    try:
        bridge.run_sync(meta.open(), timeout_s=options.request_deadline_s + 5)
    except Exception as err:
        log.error("cannot reach the metadata servers at %s: %s", ",".join(addrs), err)
        bridge.close()
        return 1
    fs = FsClient(meta, data, tuning)
    expose(ClientCacheCollector(data.cache))
    operations = instrument_operations(DfsOperations(fs, bridge, options))
    # default_permissions: the kernel checks permissions with the caller's real
    # credentials (groups included) on every path component, also where its dentry
    # cache answers without a lookup; the servers still check every change.
    fuse_options = {"fsname=dfs", "subtype=dfs", "default_permissions", *kernel_options}
    # Resolved before mounting: once mounted, a stat of the mount point from this
    # process waits for this process's own loop.
    resolved = str(mountpoint.resolve())
    try:
        pyfuse3.init(operations, str(mountpoint), fuse_options)
    except RuntimeError as err:
        log.error("cannot mount at %s: %s", mountpoint, err)
        bridge.run_sync(meta.close(), timeout_s=10)
        bridge.close()
        return 1
    log.info("mounted at %s (metadata servers %s)", mountpoint, ",".join(addrs))
    try:
        trio.run(_serve, resolved)
    finally:
        with contextlib.suppress(Exception):
            bridge.run_sync(fs.flush_all(), timeout_s=options.request_deadline_s)
        with contextlib.suppress(Exception):
            pyfuse3.close(unmount=True)
        with contextlib.suppress(Exception):
            bridge.run_sync(data.close(), timeout_s=10)
            bridge.run_sync(meta.close(), timeout_s=10)
        bridge.close()
        log.info("unmounted %s", mountpoint)
    return 0


async def _serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        nursery.start_soon(_stop_on_unmount, mountpoint)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_unmount(mountpoint: str) -> None:
    """End the session once the mount is gone. pyfuse3's loop normally ends by itself
    at an unmount, but after a sequential read served by client read-ahead it was
    seen to keep waiting for minutes with no request in flight."""
    while True:
        await trio.sleep(UNMOUNT_POLL_S)
        if not _listed_as_mounted(mountpoint):
            log.info("%s was unmounted: stopping", mountpoint)
            pyfuse3.terminate()
            return


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %d: flushing and unmounting", signum)
            pyfuse3.terminate()
            return


def _listed_as_mounted(resolved_path: str) -> bool:
    """Whether the kernel lists a mount at `resolved_path`. Never touches the path
    itself: from the mount's own loop, a stat of its root would wait for the loop."""
    return any(line.split()[4] == resolved_path
               for line in MOUNTINFO.read_text().splitlines())


def umount(mountpoint: str) -> int:
    """`dfs umount`: ask the kernel to unmount; the mount process flushes and exits."""
    done = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        print(f"dfs umount: {message}", file=sys.stderr)
        return 1
    return 0
