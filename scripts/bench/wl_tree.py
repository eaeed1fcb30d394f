"""The tree workload: copy Python's standard library in, check every byte, `rm -r` it.

The source is this interpreter's stdlib without site-packages, so the tree is a real
mix of small and large files and deep directories, the same on every target.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from context import Bench, Deadline, rate
from figures import Figure

THIRD_PARTY_DIRS = frozenset({"site-packages", "dist-packages"})
HASH_BLOCK = 1024 * 1024


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path, subset: tuple[str, ...] | None) -> list[Path]:
    """Regular files of the tree, relative to `root`, without third-party packages."""
    tops = [root / name for name in subset] if subset else [root]
    found: list[Path] = []
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in THIRD_PARTY_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_file() and not path.is_symlink():
                    found.append(path.relative_to(root))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tree(bench: Bench) -> Iterator[Figure]:
    sizes = bench.sizes
    src = stdlib_root()
    files = source_files(src, sizes.tree_subset)
    expected = {rel: sha256_of(src / rel) for rel in files}
    total_bytes = sum((src / rel).stat().st_size for rel in files)
    dst = bench.root / "stdlib"

    bench.progress(f"tree: copying {len(files)} files, {total_bytes / 2**20:.0f} MiB")
    deadline = Deadline(sizes.phase_cap_s)
    started = time.perf_counter()
    copied = 0
    made_dirs: set[Path] = set()
    for rel in files:
        if deadline.expired():
            break
        if (parent := (dst / rel).parent) not in made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(parent)
        # copy2 = data + mode + times, what `cp -a` does for a regular file.
        shutil.copy2(src / rel, dst / rel)
        copied += 1
    yield rate("tree_copy", copied, len(files), time.perf_counter() - started)

    bench.drop_caches()
    bench.progress("tree: sha256 of every copy")
    deadline = Deadline(sizes.phase_cap_s)
    started = time.perf_counter()
    checked = 0
    for rel in files[:copied]:
        if deadline.expired():
            break
        if sha256_of(dst / rel) != expected[rel]:
            raise OSError(f"tree: {rel} differs from its source after the copy")
        checked += 1
    yield rate("tree_verify", checked, copied, time.perf_counter() - started)

    bench.progress("tree: rm -r")
    started = time.perf_counter()
    subprocess.run(["rm", "-r", "--", str(dst)], check=True, timeout=sizes.phase_cap_s)
    yield rate("tree_rm", copied, copied, time.perf_counter() - started)
