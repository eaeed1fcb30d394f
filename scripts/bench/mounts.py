"""Starting and stopping the passthrough mount for a benchmark run, never leaving it behind.

Mount state is read from /proc/self/mountinfo, not by stat()ing the mount point,
so a hung file system cannot hang the check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
PASSTHROUGH_SCRIPT = Path(__file__).resolve().parent / "passthrough.py"
MOUNT_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05


class MountError(Exception):
    """A mount that did not come up; the message carries the log's tail."""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    return any(_unescape(line.split()[4]) == target for line in MOUNTINFO.read_text().splitlines())


def unmount(path: Path) -> None:
    """fusermount3 -u, and a lazy -uz when the mount is still busy."""
    for flags in ("-u", "-uz"):
        if not is_mounted(path):
            return
        subprocess.run(["fusermount3", flags, str(path)], stderr=subprocess.DEVNULL,
                       timeout=STOP_TIMEOUT_S, check=False)


class PassthroughMount:
    """passthrough.py SOURCE MOUNTPOINT as a child process, with its log in `log_path`."""

    def __init__(self, source: Path, mountpoint: Path, log_path: Path,
                 extra_args: Sequence[str] = ()) -> None:
        self.source = source
        self.mountpoint = mountpoint
        self.log_path = log_path
        self.argv = [sys.executable, str(PASSTHROUGH_SCRIPT), str(source), str(mountpoint),
                     *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.source.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not is_mounted(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MountError(f"passthrough did not mount: {self.log_tail()}")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGTERM (the mount unmounts itself), then fusermount3, then SIGKILL."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)
        unmount(self.mountpoint)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
