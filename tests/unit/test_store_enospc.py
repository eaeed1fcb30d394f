"""A full data filesystem: the writer gets NoSpace, earlier chunks stay intact, no temp
file is left, and the store keeps working. Uses a real 2 MiB tmpfs (needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfs.data.store import ChunkStore, ChunkStoreError, NoSpace

FS_SIZE = "2m"
EARLIER = {1: os.urandom(600_000), 2: os.urandom(600_000)}
TOO_BIG = os.urandom(1_200_000)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mount_point)],
        check=True,
        timeout=30,
    )
    try:
        yield mount_point
    finally:
        # Lazy, so a file a failed test left open cannot keep the mount alive.
        subprocess.run(["umount", "-l", str(mount_point)], check=True, timeout=30)


def test_full_filesystem_is_no_space_and_harms_nothing(small_fs: Path) -> None:
    store = ChunkStore(small_fs / "data")
    for chunk_id, data in EARLIER.items():
        store.put(chunk_id, data)
    used_before = store.used_bytes

    with pytest.raises(NoSpace):
        store.put(3, TOO_BIG)

    assert os.listdir(small_fs / "data" / "tmp") == []
    assert not store.has(3)
    assert store.used_bytes == used_before
    for chunk_id, data in EARLIER.items():
        assert store.read(chunk_id) == data
    # The space the failed upload took is back: a smaller chunk still fits.
    store.put(4, b"small" * 1000)
    assert store.read(4) == b"small" * 1000
    assert ChunkStore(small_fs / "data").chunk_ids() == [1, 2, 4]


def test_streamed_upload_running_out_of_space_leaves_nothing(small_fs: Path) -> None:
    store = ChunkStore(small_fs / "data")
    store.put(1, EARLIER[1])
    writer = store.begin_write(2, 4 * 1024 * 1024)
    with pytest.raises(NoSpace):
        for _ in range(64):
            writer.write(b"z" * 65536)
    with pytest.raises(ChunkStoreError, match="already finished"):
        writer.commit()
    assert os.listdir(small_fs / "data" / "tmp") == []
    assert store.read(1) == EARLIER[1]


def test_filesystem_figures_follow_the_small_filesystem(small_fs: Path) -> None:
    store = ChunkStore(small_fs / "data")
    capacity, available_before = store.filesystem_bytes()
    assert capacity == 2 * 1024 * 1024
    store.put(1, EARLIER[1])
    _, available_after = store.filesystem_bytes()
    assert available_before - available_after >= len(EARLIER[1])
