"""Differential test: random operation sequences on the namespace state machine and on a
real local directory (Linux itself, through a worker process that takes the caller's
credentials) give the same results, the same errnos and the same tree, as root and as an
unprivileged user with supplementary groups."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.posix.local_target import LocalTarget
from tests.posix.ns_target import NamespaceTarget
from tests.posix.vocab import Creds

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching callers needs root")

EXAMPLES_PER_CALLER = 110  # two callers: >= 200 sequences per run
STEPS = 30

NAMES = ("a", "b", "c")
# Short paths are drawn more often, so most operations meet entries that exist.
PATHS = (
    [name for name in NAMES for _ in range(4)]
    + [f"{a}/{b}" for a in NAMES for b in NAMES]
    + ["a/a/a", "a/a/b", "a/b/c", "b/a/c", "c/c/a"]
)
paths = st.sampled_from(PATHS)
# No target climbs above the test root: beyond it the two sides see different worlds.
link_targets = st.one_of(paths, st.sampled_from(["zz", "a/../b", "b/c/../../a"]))
dir_modes = st.sampled_from(["0755", "0700", "0555", "0777", "01777", "02775", "0300", "0"])
file_modes = st.sampled_from(["0644", "0600", "04755", "02755", "02745", "0", "0777", "0444"])
uids = st.sampled_from(["-1", "0", "1000", "1001"])
gids = st.sampled_from(["-1", "0", "1000", "2000", "3000"])
times = st.sampled_from(["now", "omit", "1000000000", "7"])
xattr_names = st.sampled_from(["user.a", "user.b", "trusted.t", "security.s"])
fields = st.sampled_from(["type", "mode", "uid", "gid", "nlink", "size"])

SPECIAL = ("fifo", "sock", "chr", "blk")

_local: LocalTarget | None = None


class Differential(RuleBasedStateMachine):
    creds = Creds(0, 0)
    root_mode = 0o755

    def __init__(self) -> None:
        super().__init__()
        assert _local is not None
        self.local = _local
        self.namespace = NamespaceTarget()
        self.local.reset(self.creds, self.root_mode)
        self.namespace.reset(self.creds, self.root_mode)
        # A small tree to start from, so early steps do not all answer ENOENT.
        self.both("mkdir", "a", "0775")
        self.both("mkdir", "a/a", "0755")
        self.both("create", "b", "0644")
        self.both("create", "a/b", "0664")

    def both(self, op: str, *args: str) -> str:
        expected = self.local.run(self.creds, op, list(args))
        got = self.namespace.run(self.creds, op, list(args))
        assert got == expected, (
            f"{self.creds.text()} {op} {' '.join(args)}: dfs {got}, linux {expected}"
        )
        return got

    def kind_of(self, path: str) -> str:
        return self.local.run(Creds(0, 0), "stat", [path, "type"])

    @rule(path=paths, mode=dir_modes)
    def mkdir(self, path: str, mode: str) -> None:
        self.both("mkdir", path, mode)

    @rule(path=paths, mode=file_modes)
    def create(self, path: str, mode: str) -> None:
        self.both("create", path, mode)

    @rule(path=paths, kind=st.sampled_from(["fifo", "sock", "chr", "blk", "reg"]), mode=file_modes)
    def mknod(self, path: str, kind: str, mode: str) -> None:
        self.both("mknod", path, kind, mode, "259" if kind in ("chr", "blk") else "0")

    @rule(link_target=link_targets, path=paths)
    def symlink(self, link_target: str, path: str) -> None:
        self.both("symlink", link_target, path)

    @rule(old=paths, new=paths)
    def link(self, old: str, new: str) -> None:
        self.both("link", old, new)

    @rule(path=paths)
    def unlink(self, path: str) -> None:
        self.both("unlink", path)

    @rule(path=paths)
    def rmdir(self, path: str) -> None:
        self.both("rmdir", path)

    @rule(old=paths, new=paths, flags=st.sampled_from(["0", "NOREPLACE", "EXCHANGE"]))
    def rename(self, old: str, new: str, flags: str) -> None:
        self.both("renameat2", old, new, flags)

    @rule(path=paths, mode=st.one_of(dir_modes, file_modes))
    def chmod(self, path: str, mode: str) -> None:
        self.both("chmod", path, mode)

    @rule(path=paths, uid=uids, gid=gids)
    def chown(self, path: str, uid: str, gid: str) -> None:
        if uid == gid == "-1":
            return  # chown(-1, -1) clears suid through a mode change the table does not model
        self.both("chown", path, uid, gid)

    @rule(path=paths, uid=uids, gid=gids)
    def lchown(self, path: str, uid: str, gid: str) -> None:
        if uid == gid == "-1":
            return
        self.both("lchown", path, uid, gid)

    @rule(path=paths, size=st.sampled_from(["0", "5", "100"]))
    def truncate(self, path: str, size: str) -> None:
        self.both("truncate", path, size)

    @rule(path=paths, offset=st.sampled_from(["0", "10"]), length=st.sampled_from(["1", "50"]))
    def write(self, path: str, offset: str, length: str) -> None:
        if self.kind_of(path) in SPECIAL:
            return  # opening a FIFO, socket or device reaches it, not the file system
        self.both("write", path, offset, length)

    @rule(path=paths, flags=st.sampled_from(["O_RDONLY", "O_WRONLY", "O_RDWR", "O_WRONLY|O_TRUNC"]))
    def open(self, path: str, flags: str) -> None:
        if self.kind_of(path) in SPECIAL:
            return
        self.both("open", path, flags)

    @rule(path=paths, atime=times, mtime=times)
    def utimensat(self, path: str, atime: str, mtime: str) -> None:
        self.both("utimensat", path, atime, mtime)

    @rule(path=paths, field=fields, follow=st.booleans())
    def stat(self, path: str, field: str, follow: bool) -> None:
        kind = self.local.run(Creds(0, 0), "stat" if follow else "lstat", [path, "type"])
        if field == "size" and kind == "dir":
            return  # directory sizes are the file system's own business
        self.both("stat" if follow else "lstat", path, field)

    @rule(path=paths)
    def readdir(self, path: str) -> None:
        self.both("readdir", path)

    @rule(path=paths)
    def readlink(self, path: str) -> None:
        self.both("readlink", path)

    @rule(path=paths, mask=st.sampled_from(["F_OK", "R_OK", "W_OK", "X_OK", "R_OK|W_OK"]))
    def access(self, path: str, mask: str) -> None:
        self.both("access", path, mask)

    @rule(
        path=paths,
        name=xattr_names,
        value=st.sampled_from(["v", "", "longer value"]),
        flags=st.sampled_from(["0", "CREATE", "REPLACE"]),
        follow=st.booleans(),
    )
    def setxattr(self, path: str, name: str, value: str, flags: str, follow: bool) -> None:
        self.both("setxattr" if follow else "lsetxattr", path, name, value, flags)

    @rule(path=paths, name=xattr_names, size=st.sampled_from(["0", "1"]))
    def getxattr(self, path: str, name: str, size: str) -> None:
        self.both("getxattr", path, name, size)

    @rule(path=paths)
    def listxattr(self, path: str) -> None:
        self.both("listxattr", path, "0")

    @rule(path=paths, name=xattr_names)
    def removexattr(self, path: str, name: str) -> None:
        self.both("removexattr", path, name)

    @invariant()
    def same_tree(self) -> None:
        assert self.namespace.tree() == self.local.tree()


class UserDifferential(Differential):
    creds = Creds(1000, 1000, (1000, 2000))


CALLERS = [Creds(0, 0), Creds(1000, 1000, (1000, 2000)), Creds(1001, 1001, (1001,))]


class MixedDifferential(Differential):
    """Callers take turns, so one user meets another's modes, groups and sticky bits.

    Two kernel policies that act before any file system sees the call are kept out:
    fs.protected_hardlinks (link to another's file) and fs.protected_symlinks (following
    another's link in a world-writable sticky directory)."""

    root_mode = 0o777

    @rule(caller=st.sampled_from(CALLERS))
    def become(self, caller: Creds) -> None:
        self.creds = caller

    def both(self, op: str, *args: str) -> str:
        if op in ("mkdir", "chmod") and args[1] == "01777":
            args = (args[0], "01775")
        if op == "link" and self.creds.uid != 0:
            owner = self.local.run(Creds(0, 0), "lstat", [args[0], "uid"])
            if owner != str(self.creds.uid):
                return "skipped"
        return super().both(op, *args)


@pytest.fixture(scope="module")
def local_target() -> Iterator[LocalTarget]:
    global _local
    with LocalTarget() as target:
        _local = target
        yield target
    _local = None


SETTINGS = settings(
    max_examples=EXAMPLES_PER_CALLER,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_same_as_linux_as_root(local_target: LocalTarget) -> None:
    run_state_machine_as_test(Differential, settings=SETTINGS)


def test_same_as_linux_as_unprivileged_user(local_target: LocalTarget) -> None:
    run_state_machine_as_test(UserDifferential, settings=SETTINGS)


def test_same_as_linux_with_callers_taking_turns(local_target: LocalTarget) -> None:
    run_state_machine_as_test(MixedDifferential, settings=settings(SETTINGS, max_examples=60))


@pytest.mark.long
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("machine", [Differential, UserDifferential, MixedDifferential])
def test_same_as_linux_long(local_target: LocalTarget, machine: type[Differential]) -> None:
    run_state_machine_as_test(
        machine, settings=settings(SETTINGS, max_examples=2000, stateful_step_count=60)
    )
