"""Dropping caches before a read phase, the same way for every target.

First a target's own client cache through a user-given shell command (a remount,
or a control file of the file system), then the kernel's page, dentry and inode
caches. Never silently: when the kernel cache cannot be dropped the run says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# 3 = page cache + dentries and inodes.
DROP_ALL = "3"
HOOK_TIMEOUT_S = 60.0


class CacheDropper:
    """Call before every read phase; records whether the kernel cache was dropped."""

    def __init__(self, hook_cmd: str | None, kernel: bool = True) -> None:
        self.hook_cmd = hook_cmd
        self.kernel = kernel
        self.kernel_problem: str | None = None if kernel else "disabled by --no-drop"
        self.drops = 0

    def __call__(self) -> None:
        if self.hook_cmd:
            subprocess.run(self.hook_cmd, shell=True, check=True, timeout=HOOK_TIMEOUT_S)
        if self.kernel and self.kernel_problem is None:
            os.sync()
            try:
                DROP_CACHES.write_text(DROP_ALL)
            except OSError as err:
                self.kernel_problem = f"cannot write {DROP_CACHES}: {err.strerror} (run as root)"
                print(f"warning: page cache not dropped: {self.kernel_problem}", file=sys.stderr)
        self.drops += 1

    def describe(self) -> dict[str, object]:
        return {
            "kernel_dropped": self.kernel and self.kernel_problem is None,
            "kernel_problem": self.kernel_problem,
            "hook": self.hook_cmd,
            "drops": self.drops,
        }
