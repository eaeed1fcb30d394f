"""Processes the fault suite starts (ip, nft, and the servers it restarts), started
by a helper process instead of forked from the suite's own process.

Why: a child forked from a process that has files open on a FUSE mount closes them
before it runs its program (close_fds, and exec closes the close-on-exec ones), and
each close is a FUSE flush, which the dfs mount answers only once it has written
that file's buffered bytes: with the leader's answers to clients dropped, the flush
waited for the very `nft` command that heals the fault; after a power outage, the
restart of a metadata server waited for a metadata server. The nemesis stalled for
the client's deadline (one to two minutes) each time. The helper is started at the
first command, before the run mounts anything, and holds no file on any mount.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

TIMEOUT_S = 30.0
POLL_S = 0.05

# The helper: one JSON request a line in, one JSON answer a line out; ends at EOF.
_HELPER = """
import json, subprocess, sys
started = {}
for line in sys.stdin:
    request = json.loads(line)
    try:
        if request["op"] == "run":
            done = subprocess.run(request["argv"], input=request["input"], capture_output=True,
                                  text=True, timeout=request["timeout"])
            answer = [done.returncode, done.stdout, done.stderr]
        elif request["op"] == "spawn":
            with open(request["log"], "ab") as log:
                proc = subprocess.Popen(request["argv"], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=request["env"],
                                        start_new_session=request["session"])
            started[proc.pid] = proc
            answer = proc.pid
        else:
            answer = started[request["pid"]].poll()
    except (OSError, subprocess.TimeoutExpired) as err:
        answer = [-1, "", str(err)] if request["op"] == "run" else str(err)
    print(json.dumps(answer), flush=True)
"""

_lock = threading.Lock()
_helper: subprocess.Popen[str] | None = None


def _ask(request: dict[str, Any]) -> Any:
    global _helper
    with _lock:
        if _helper is None or _helper.poll() is not None:
            _helper = subprocess.Popen([sys.executable, "-c", _HELPER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        assert _helper.stdin is not None and _helper.stdout is not None
        _helper.stdin.write(json.dumps(request) + "\n")
        _helper.stdin.flush()
        line = _helper.stdout.readline()
    if not line:
        raise RuntimeError(f"command helper died on {request}")
    return json.loads(line)


def run_command(argv: list[str], input_text: str | None = None,
                timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv, capture_output=True, text=True), run by the helper."""
    returncode, stdout, stderr = _ask(
        {"op": "run", "argv": argv, "input": input_text, "timeout": timeout_s})
    return subprocess.CompletedProcess(argv, returncode, stdout, stderr)


class HelperProcess:
    """A long-running process the helper started: the calls of subprocess.Popen that
    tests/support/procs.py uses (pid, poll, wait, returncode)."""

    def __init__(self, argv: Sequence[str], stdout: IO[bytes], env: dict[str, str] | None,
                 start_new_session: bool = False, **_: Any) -> None:
        self.args = list(argv)
        answer = _ask({"op": "spawn", "argv": self.args, "log": stdout.name, "env": env,
                       "session": start_new_session})
        if isinstance(answer, str):
            raise OSError(f"cannot start {self.args[0]}: {answer}")
        self.pid: int = answer
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _ask({"op": "poll", "pid": self.pid})
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(POLL_S)
        return code
