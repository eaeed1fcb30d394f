"""Server processes started by tests: own data dir and log, killed at teardown.

Every process runs in its own process group (so kill takes its children too)
and carries RUN_TOKEN in its environment, so the session-end check can find
anything a test left behind, even a grandchild that escaped its group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.health import wait_healthy

RUN_TOKEN_ENV = "DFS_TEST_RUN"
RUN_TOKEN = os.environ.get(RUN_TOKEN_ENV) or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
LOG_TAIL_LINES = 60
STOP_TIMEOUT_S = 10.0


@dataclass
class ServerProcess:
    """One started process: its command, data dir, log file and address."""

    name: str
    argv: list[str]
    data_dir: Path
    log_path: Path
    addr: str | None
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """kill -9 the group and reap it."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=timeout_s)
        # Children of the group may outlive the leader.
        self.signal(signal.SIGKILL)
        return self.popen.returncode

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        assert self.addr, f"{self.name} has no address to check"
        wait_healthy(self.addr, timeout_s, still_alive=self.alive)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessSet:
    """The processes one test started; `cleanup` kills whatever is left."""

    base_dir: Path
    procs: list[ServerProcess] = field(default_factory=list)
    # What starts a process: subprocess.Popen, or a stand-in with its calls (the fault
    # suite starts servers from a helper process: tests/faults/commands.py).
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen

    def start(
        self,
        name: str,
        argv: Sequence[str],
        addr: str | None = None,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> ServerProcess:
        data_dir = data_dir or self.base_dir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.base_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {}), RUN_TOKEN_ENV: RUN_TOKEN}
        with log_path.open("ab") as log:
            popen = self.popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        proc = ServerProcess(name, list(argv), data_dir, log_path, addr, popen)
        self.procs.append(proc)
        return proc

    def start_python(
        self, name: str, script: Path | str, *args: str, addr: str | None = None
    ) -> ServerProcess:
        return self.start(name, [sys.executable, str(script), *args], addr=addr)

    def dump_logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.pid}, {p.log_path}) -----\n{p.log_tail()}" for p in self.procs
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.stop(timeout_s=5.0)


def leftover_processes(token: str = RUN_TOKEN) -> list[str]:
    """Processes other than this one whose environment carries the run token."""
    needle = f"{RUN_TOKEN_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                )
                found.append(f"pid {entry.name}: {cmdline.strip()}")
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return found


def kill_leftovers(token: str = RUN_TOKEN) -> None:
    for line in leftover_processes(token):
        pid = int(line.split()[1].rstrip(":"))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)


def fuse_mounts_under(roots: Sequence[Path]) -> list[str]:
    """FUSE mount points below any of `roots` (from /proc/self/mountinfo)."""
    found = []
    resolved = [str(r.resolve()) for r in roots]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point = fields[4].replace("\\040", " ")
        fs_type = fields[fields.index("-") + 1]
        if fs_type.startswith("fuse") and any(
            mount_point == r or mount_point.startswith(r + "/") for r in resolved
        ):
            found.append(mount_point)
    return found
