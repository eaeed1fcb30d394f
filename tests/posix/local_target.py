"""LocalTarget: runs vocabulary operations on a real local directory through a child
process (tests/posix/local_worker.py) that takes each caller's credentials.

The reference the namespace is compared with: what Linux itself answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from tests.posix.vocab import Creds

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class LocalTarget:
    """A worker process and a base directory for the cases' roots (removed on close)."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are 0700, and unprivileged callers
        # must be able to reach the case roots.
        self.base = tempfile.mkdtemp(prefix="dfs-posix-")
        os.chmod(self.base, 0o755)
        self._sequence = 0
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "tests.posix.local_worker"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, creds: Creds, op: str, args: list[str]) -> str:
        assert self._worker.stdin is not None and self._worker.stdout is not None
        self._sequence += 1
        request = {"id": self._sequence, "creds": creds.text(), "op": op, "args": args}
        self._worker.stdin.write(json.dumps(request) + "\n")
        self._worker.stdin.flush()
        while True:
            line = self._worker.stdout.readline()
            if not line:
                raise RuntimeError(f"local worker died on {request}")
            answer = json.loads(line)
            # An answer to an earlier request (one interrupted while it waited) is stale.
            if answer["id"] == self._sequence:
                result: str = answer["result"]
                return result

    def reset(self, owner: Creds, mode: int) -> None:
        """A fresh, empty test root owned by `owner` with `mode`."""
        self.run(Creds(0, 0), "reset", [self.base, str(owner.uid), str(owner.gid), f"{mode:o}"])

    def tree(self) -> list[list[object]]:
        rows: list[list[object]] = json.loads(self.run(Creds(0, 0), "tree", []))
        return rows

    def close(self) -> None:
        if self._worker.stdin is not None:
            self._worker.stdin.close()
        self._worker.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalTarget:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
