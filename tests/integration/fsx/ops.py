"""The exerciser's operations: what a seed draws, and how one operation runs on one
directory tree, reduced to an outcome that two trees must agree on.

Drawing is stateless (a seed alone fixes the whole sequence, whatever the trees
answer), so a failing seed replays exactly. Paths come from a small pool, so
operations collide: renames onto existing names, unlinks of open files, rmdir of
full directories, writes through descriptors of renamed files.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import random
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DIRS = ("", "d0", "d1", "d0/d2")
SLOTS = 4
# Offsets mostly near the start of a file; some straddle the first block boundary
# (the cluster's 4 MiB blocks), so slices of two blocks and holes are exercised.
BLOCK = 4 << 20
NEAR_START = 256 << 10
OPEN_FLAGS = (
    os.O_RDWR,
    os.O_RDWR | os.O_CREAT,
    os.O_RDWR | os.O_CREAT,
    os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    os.O_RDWR | os.O_CREAT | os.O_EXCL,
    os.O_RDONLY,
    os.O_WRONLY | os.O_CREAT,
    os.O_WRONLY | os.O_APPEND,
)
MODES = (0o644, 0o600, 0o755, 0o444, 0o4755, 0o1777)

Outcome = tuple[object, ...]


@dataclass(frozen=True)
class Op:
    """One operation: a name and its arguments (paths relative to a tree's root)."""

    name: str
    args: tuple[object, ...]

    def __str__(self) -> str:
        return f"{self.name} {' '.join(repr(arg) for arg in self.args)}"


class Tree:
    """One directory tree under test and its open descriptors, by slot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fds: dict[int, int] = {}

    def path(self, relative: object) -> str:
        return os.path.join(self.root, str(relative))

    def close_all(self) -> None:
        for slot in list(self.fds):
            os.close(self.fds.pop(slot))


# ---- drawing ------------------------------------------------------------------------

FILES = ("f0", "f1", "f2", "f3")
DIR_PATHS = DIRS[1:]


def _file(rng: random.Random) -> str:
    """Mostly a file name in an existing-or-not directory; sometimes a directory."""
    if rng.random() < 0.08:
        return rng.choice(DIR_PATHS)
    return os.path.join(rng.choice(DIRS), rng.choice(FILES))


def _dir(rng: random.Random) -> str:
    """Mostly one of the directory names; sometimes a file name."""
    return rng.choice(DIR_PATHS) if rng.random() < 0.85 else _file(rng)


def _offset(rng: random.Random) -> int:
    if rng.random() < 0.05:
        return BLOCK - NEAR_START // 4 + rng.randrange(NEAR_START // 2)
    return rng.randrange(NEAR_START)


def _length(rng: random.Random) -> int:
    return rng.choice((rng.randrange(1, 64), rng.randrange(1, 4097), rng.randrange(1, 65537)))


def draw(rng: random.Random, open_slots: list[int]) -> Op:
    """The next operation of a seeded sequence; descriptor operations go to an open
    slot of the reference tree (`open_slots`), so few are wasted on EBADF."""
    kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
    if kind in SLOT_KINDS and not open_slots:
        kind = "open"
    slot = rng.choice(open_slots) if kind in SLOT_KINDS else rng.randrange(SLOTS)
    if kind == "open":
        return Op(kind, (slot, _file(rng), rng.choice(OPEN_FLAGS)))
    if kind in ("close", "fsync", "fstat"):
        return Op(kind, (slot,))
    if kind == "write":
        length = _length(rng)
        return Op(kind, (slot, _offset(rng), length, rng.randrange(1 << 30)))
    if kind in ("read", "mmap_read"):
        return Op(kind, (slot, _offset(rng), _length(rng)))
    if kind == "ftruncate":
        return Op(kind, (slot, _offset(rng)))
    if kind == "truncate":
        return Op(kind, (_file(rng), _offset(rng)))
    if kind in ("rename", "link"):
        pick = _dir if kind == "rename" and rng.random() < 0.3 else _file
        return Op(kind, (pick(rng), pick(rng)))
    if kind == "chmod":
        return Op(kind, (_file(rng) if rng.random() < 0.8 else _dir(rng), rng.choice(MODES)))
    if kind == "symlink":
        return Op(kind, (rng.choice(FILES), _file(rng)))
    if kind in ("mkdir", "rmdir", "listdir"):
        return Op(kind, (_dir(rng),))
    return Op(kind, (_file(rng),))


WEIGHTS = {
    "open": 8, "close": 5, "write": 30, "read": 12, "mmap_read": 4, "ftruncate": 4,
    "fsync": 2, "fstat": 3, "truncate": 2, "stat": 5, "read_file": 3, "rename": 4,
    "link": 2, "unlink": 3, "mkdir": 3, "rmdir": 2, "chmod": 2, "symlink": 1, "listdir": 3,
}
KINDS = list(WEIGHTS)
KIND_WEIGHTS = list(WEIGHTS.values())
SLOT_KINDS = {"close", "fsync", "fstat", "write", "read", "mmap_read", "ftruncate"}


def payload(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


# ---- running ------------------------------------------------------------------------

def describe(st: os.stat_result) -> Outcome:
    """What two trees must agree on about one inode (not times, not inode numbers)."""
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
    return (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_nlink, size)


def run(tree: Tree, op: Op) -> Outcome:
    """Run `op` on `tree`; the outcome is ("ok", result...) or ("err", errno name)."""
    try:
        return ("ok", *_RUNNERS[op.name](tree, *op.args))
    except OSError as err:
        return ("err", errno.errorcode.get(err.errno or 0, str(err.errno)))


def _fd(tree: Tree, slot: object) -> int:
    fd = tree.fds.get(int(str(slot)))
    if fd is None:
        raise OSError(errno.EBADF, "slot not open")
    return fd


def _open(tree: Tree, slot: int, path: str, flags: int) -> Outcome:
    if slot in tree.fds:
        os.close(tree.fds.pop(slot))
    tree.fds[slot] = os.open(tree.path(path), flags, 0o644)
    return ()


def _close(tree: Tree, slot: int) -> Outcome:
    os.close(_fd(tree, slot))
    del tree.fds[slot]
    return ()


def _write(tree: Tree, slot: int, offset: int, length: int, seed: int) -> Outcome:
    fd = _fd(tree, slot)
    data = payload(seed, length)
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
        return (os.write(fd, data),)  # pwrite on O_APPEND appends on Linux too
    return (os.pwrite(fd, data, offset),)


def _read(tree: Tree, slot: int, offset: int, length: int) -> Outcome:
    return (os.pread(_fd(tree, slot), length, offset),)


def _mmap_read(tree: Tree, slot: int, offset: int, length: int) -> Outcome:
    fd = _fd(tree, slot)
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENODEV, "no mmap of a directory")  # a dfs dir's size is 0
    size = st.st_size
    if size == 0 or offset >= size:
        return (b"",)
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
        return (mapped[offset : min(size, offset + length)],)


def _ftruncate(tree: Tree, slot: int, size: int) -> Outcome:
    os.ftruncate(_fd(tree, slot), size)
    return ()


def _fsync(tree: Tree, slot: int) -> Outcome:
    os.fsync(_fd(tree, slot))
    return ()


def _fstat(tree: Tree, slot: int) -> Outcome:
    return describe(os.fstat(_fd(tree, slot)))


def _truncate(tree: Tree, path: str, size: int) -> Outcome:
    os.truncate(tree.path(path), size)
    return ()


def _stat(tree: Tree, path: str) -> Outcome:
    return describe(os.lstat(tree.path(path)))


def _read_file(tree: Tree, path: str) -> Outcome:
    with open(tree.path(path), "rb") as source:
        return (source.read(),)


def _rename(tree: Tree, old: str, new: str) -> Outcome:
    os.rename(tree.path(old), tree.path(new))
    return ()


def _link(tree: Tree, old: str, new: str) -> Outcome:
    os.link(tree.path(old), tree.path(new), follow_symlinks=False)
    return ()


def _unlink(tree: Tree, path: str) -> Outcome:
    os.unlink(tree.path(path))
    return ()


def _mkdir(tree: Tree, path: str) -> Outcome:
    os.mkdir(tree.path(path), 0o755)
    return ()


def _rmdir(tree: Tree, path: str) -> Outcome:
    os.rmdir(tree.path(path))
    return ()


def _chmod(tree: Tree, path: str, mode: int) -> Outcome:
    os.chmod(tree.path(path), mode)
    return ()


def _symlink(tree: Tree, target: str, path: str) -> Outcome:
    os.symlink(target, tree.path(path))
    return ()


def _listdir(tree: Tree, path: str) -> Outcome:
    return tuple(sorted(os.listdir(tree.path(path))))


_RUNNERS: dict[str, Callable[..., Outcome]] = {
    "open": _open, "close": _close, "write": _write, "read": _read, "mmap_read": _mmap_read,
    "ftruncate": _ftruncate, "fsync": _fsync, "fstat": _fstat, "truncate": _truncate,
    "stat": _stat, "read_file": _read_file, "rename": _rename, "link": _link,
    "unlink": _unlink, "mkdir": _mkdir, "rmdir": _rmdir, "chmod": _chmod,
    "symlink": _symlink, "listdir": _listdir,
}


def snapshot(root: Path) -> dict[str, Outcome]:
    """Every entry under `root`: its description, and its bytes or link target."""
    found: dict[str, Outcome] = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, root)
            st = os.lstat(full)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as source:
                    content = source.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            found[relative] = (*describe(st), content)
    return found
