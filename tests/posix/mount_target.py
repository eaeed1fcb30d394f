"""MountTarget: runs the errno tables on a real dfs FUSE mount, as root and as other
users, through the same credential-switching worker (tests/posix/local_worker.py) that
runs them on a local directory.

The mount must allow other users (`-o allow_other`). The worker changes into each
case's root as root and works with relative paths from there, so unprivileged callers
need no search permission on the directories above the mount (pytest's are 0700).

Every row of the tables gives Linux's answer on the mount; there are no known
differences to skip. setxattr's XATTR_CREATE/XATTR_REPLACE reach dfs only as a
getxattr before the setxattr (pyfuse3 emulates them), so they answer as Linux does
but are not atomic against another mount: docs/posix.md says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.posix.local_target import LocalTarget


class MountTarget(LocalTarget):
    """The local worker pointed at a directory on a dfs mount (removed on close)."""

    def __init__(self, mountpoint: Path, name: str = "posix-tables") -> None:
        super().__init__()
        # The cases live on the mount, not in the local directory LocalTarget made.
        os.rmdir(self.base)
        self.base = str(mountpoint / name)
        os.mkdir(self.base)
        os.chmod(self.base, 0o755)

    def close(self) -> None:
        """Stops the worker; the cases stay on the mount, which goes with its cluster
        (removing them costs a metadata commit per entry)."""
        if self._worker.stdin is not None:
            self._worker.stdin.close()
        self._worker.wait(timeout=30)
