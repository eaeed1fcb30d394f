"""A whole local cluster (`dfs up`: 3 metadata + 4 data servers and a FUSE mount)
for file-level integration tests, stopped with `dfs down` at teardown."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import RUN_TOKEN, RUN_TOKEN_ENV

DFS = [sys.executable, "-m", "dfs.cli"]


@dataclass
class LocalCluster:
    directory: Path
    mount: Path

    @property
    def cluster_file(self) -> Path:
        return self.directory / "cluster.json"

    def record(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.cluster_file.read_text())
        return parsed

    def dfs(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        import os

        env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN}
        return subprocess.run([*DFS, *args], capture_output=True, text=True,
                              timeout=timeout_s, env=env)

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        done = self.dfs("up", "--dir", str(self.directory), "--mount", str(self.mount), *extra)
        if done.returncode != 0:
            raise RuntimeError(f"dfs up failed: {done.stderr}\n{self.logs()}")
        return done

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.dfs("down", "--dir", str(self.directory))

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.directory.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"----- {log.name} -----\n" + "\n".join(tail))
        return "\n".join(out)
