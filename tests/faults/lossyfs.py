"""Mount the lossy storage layer (tests/faults/lossyfs_ops.py) and take commands on a
Unix socket, until SIGTERM or SIGINT:

    python -m tests.faults.lossyfs BACKING MOUNTPOINT CONTROL_SOCKET

BACKING holds `root/` (the files seen at MOUNTPOINT) and `trash/` (removed files kept
until their removal is durable). A command is one word or two, sent before the
client closes its side; the answer is one line, `ok ...` or `error ...`:
`power-loss`, `sync`, `full on`, `full off`, `status`.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import pyfuse3
import trio

from tests.faults.lossyfs_ops import LossyOps  # puts scripts/bench on the path

from passthrough import serve_until_signal  # isort: skip

log = logging.getLogger("lossyfs")

MOUNT_OPTIONS = {*pyfuse3.default_options, "fsname=dfs-lossy", "subtype=lossyfs"}


def answer(ops: LossyOps, command: str) -> str:
    """Run one control command against the file system (between two FUSE requests:
    the layer is single-threaded, so nothing is half done)."""
    if command == "power-loss":
        return "ok " + ops.power_loss()
    if command == "sync":
        return "ok " + ops.sync()
    if command in ("full on", "full off"):
        ops.full = command == "full on"
        return "ok " + ops.status()
    if command == "status":
        return "ok " + ops.status()
    return f"error unknown command {command!r}"


async def serve_control(ops: LossyOps, socket_path: Path) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    socket_path.unlink(missing_ok=True)
    await sock.bind(str(socket_path))
    sock.listen()

    async def one_client(stream: trio.SocketStream) -> None:
        received = b""
        while chunk := await stream.receive_some(4096):
            received += chunk
        command = received.decode(errors="replace").strip()
        try:
            reply = answer(ops, command)
        except OSError as err:
            log.exception("control command %r failed", command)
            reply = f"error {err}"
        try:
            await stream.send_all(reply.encode() + b"\n")
        except trio.BrokenResourceError:  # the client gave up waiting: the disk lives on
            log.warning("control client left before the answer to %r", command)
        await stream.aclose()

    await trio.serve_listeners(one_client, [trio.SocketListener(sock)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("control", type=Path, help="the control socket's path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root, trash = args.backing / "root", args.backing / "trash"
    root.mkdir(parents=True, exist_ok=True)
    trash.mkdir(exist_ok=True)
    args.mountpoint.mkdir(parents=True, exist_ok=True)
    # One descriptor per file with unsynced bytes: many, when fsyncs are skipped.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.umask(0)  # the kernel has already applied the caller's umask to every mode
    ops = LossyOps(os.fsencode(root.resolve()), os.fsencode(trash.resolve()))
    pyfuse3.init(ops, str(args.mountpoint), MOUNT_OPTIONS)
    try:
        # One request at a time: with several, pyfuse3 workers race for each request
        # and the loser blocks the whole loop in a read of /dev/fuse (the control
        # socket then waits for the next request, which never comes to a dead server's
        # disk). The handlers never await, so nothing runs in parallel anyway.
        trio.run(serve_until_signal, 1, lambda: serve_control(ops, args.control))
    finally:
        pyfuse3.close(unmount=True)
    log.info("unmounted %s", args.mountpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
