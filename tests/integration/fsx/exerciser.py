"""The differential exerciser (in the style of fsx): one seeded sequence of operations
run on two trees, a dfs mount and a local directory, that must agree after every step.

After each operation the two outcomes (result or errno) are compared, then what the
operation touched (the descriptor's inode, or the paths it named); every
`full_every` operations and at the end, the whole trees (names, kinds, modes, link
counts, sizes, bytes). A divergence names the seed, the step and the operations that
led to it, with the command that replays them.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.integration.fsx.ops import Op, Outcome, Tree, describe, draw, run, snapshot

LOG_TAIL = 40
FULL_EVERY = 200


@dataclass
class Divergence(Exception):
    """The trees disagree: where, about what, and the operations leading there."""

    seed: int
    step: int
    what: str
    tail: list[str]

    def __str__(self) -> str:
        lines = [f"fsx seed {self.seed}: divergence at step {self.step}: {self.what}",
                 f"last {len(self.tail)} operations:", *self.tail,
                 f"replay: python -m tests.integration.fsx --seed {self.seed} "
                 f"--ops {self.step + 1} DFS_DIR LOCAL_DIR"]
        return "\n".join(lines)


def exercise(seed: int, ops: int, under_test: Path, reference: Path,
             full_every: int = FULL_EVERY, log: Callable[[str], None] | None = None) -> None:
    """Run `ops` operations of `seed` on both trees; raise Divergence at the first
    disagreement. Both trees should start empty."""
    rng = random.Random(seed)
    trees = Tree(under_test), Tree(reference)
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    step = 0

    def diverged(what: str) -> Divergence:
        return Divergence(seed, step, what, list(tail))

    try:
        for step in range(ops):
            op = draw(rng, sorted(trees[1].fds))
            line = f"{step}: {op}"
            tail.append(line)
            if log is not None:
                log(line)
            got, want = run(trees[0], op), run(trees[1], op)
            if got != want:
                raise diverged(f"{op}: dfs {_short(got)} != local {_short(want)}")
            _check_touched(trees, op, diverged)
            if (step + 1) % full_every == 0:
                _check_whole(trees, diverged)
        step = ops
        _check_whole(trees, diverged)
    finally:
        for tree in trees:
            tree.close_all()


def _check_touched(trees: tuple[Tree, Tree], op: Op,
                   diverged: Callable[[str], Divergence]) -> None:
    if op.name in ("open", "write", "ftruncate", "fsync", "read"):
        slot = int(str(op.args[0]))
        views = [_fstat(tree, slot) for tree in trees]
        if views[0] != views[1]:
            raise diverged(f"after {op}: descriptor {slot}: dfs {views[0]} != local {views[1]}")
    elif op.name in ("truncate", "rename", "link", "unlink", "mkdir", "rmdir", "chmod",
                     "symlink"):
        for path in op.args:
            if isinstance(path, str):
                paths = [_lstat(tree, path) for tree in trees]
                if paths[0] != paths[1]:
                    raise diverged(f"after {op}: {path}: dfs {paths[0]} != local {paths[1]}")


def _check_whole(trees: tuple[Tree, Tree], diverged: Callable[[str], Divergence]) -> None:
    got, want = snapshot(trees[0].root), snapshot(trees[1].root)
    if got == want:
        return
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            raise diverged(f"tree differs at {name}: dfs {_short(got.get(name))} != "
                           f"local {_short(want.get(name))}")


def _fstat(tree: Tree, slot: int) -> Outcome | None:
    fd = tree.fds.get(slot)
    return describe(os.fstat(fd)) if fd is not None else None


def _lstat(tree: Tree, path: str) -> Outcome | str:
    try:
        return describe(os.lstat(tree.path(path)))
    except OSError as err:
        return f"errno {err.errno}"


def _short(value: object, limit: int = 200) -> str:
    """A value for a message: long byte strings by length and first difference hint."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(item, limit // 2) for item in value) + ")"
    if isinstance(value, bytes) and len(value) > 32:
        return f"<{len(value)} bytes, sum {sum(value)}>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
