"""Crash safety of the chunk store, through the file-ops layer's crash switch: a chunk
is whole or absent after a crash at any step, and unsynced bytes really are lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dfs.data.store import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStore,
    CrashSimulatingFileOps,
    NoSpace,
    SimulatedCrash,
)

EARLIER = {1: b"earlier chunk " * 1000, 2: b"another one " * 9000}
NEW_ID = 77
NEW_DATA = os.urandom(300_000)


def store_with_earlier_chunks(data_dir: Path, ops: CrashSimulatingFileOps) -> ChunkStore:
    store = ChunkStore(data_dir, file_ops=ops)
    for chunk_id, data in EARLIER.items():
        store.put(chunk_id, data)
    return store


def assert_earlier_chunks_intact(store: ChunkStore) -> None:
    for chunk_id, data in EARLIER.items():
        assert store.read(chunk_id) == data


def temp_files(data_dir: Path) -> list[str]:
    return os.listdir(data_dir / "tmp")


@pytest.mark.parametrize("step", ["pwrite", "fsync", "close", "rename", "fsync_dir"])
def test_crash_at_any_step_of_a_write_leaves_no_visible_chunk(tmp_path: Path, step: str) -> None:
    ops = CrashSimulatingFileOps()
    store = store_with_earlier_chunks(tmp_path, ops)
    writer = store.begin_write(NEW_ID, len(NEW_DATA))
    ops.crash_before(step)
    with pytest.raises(SimulatedCrash):
        writer.write(NEW_DATA)
        writer.commit()
    ops.simulate_crash()

    restarted = ChunkStore(tmp_path)
    assert not restarted.has(NEW_ID)
    with pytest.raises(ChunkNotFound):
        restarted.read(NEW_ID)
    assert temp_files(tmp_path) == []
    assert restarted.chunk_ids() == sorted(EARLIER)
    assert_earlier_chunks_intact(restarted)


def test_process_death_between_temp_write_and_rename_leaves_a_temp_file_open_removes(
    tmp_path: Path,
) -> None:
    # A kill -9 rather than a power cut: the page cache keeps everything, so the
    # fsynced temp file is still there when the server starts again.
    ops = CrashSimulatingFileOps()
    store = store_with_earlier_chunks(tmp_path, ops)
    writer = store.begin_write(NEW_ID, len(NEW_DATA))
    writer.write(NEW_DATA)
    ops.crash_before("rename")
    with pytest.raises(SimulatedCrash):
        writer.commit()
    assert len(temp_files(tmp_path)) == 1
    assert not os.path.exists(store.path_of(NEW_ID))

    restarted = ChunkStore(tmp_path)
    assert temp_files(tmp_path) == []
    assert not restarted.has(NEW_ID)
    assert_earlier_chunks_intact(restarted)


def test_acknowledged_write_survives_a_crash_whole(tmp_path: Path) -> None:
    ops = CrashSimulatingFileOps()
    store = store_with_earlier_chunks(tmp_path, ops)
    store.put(NEW_ID, NEW_DATA)
    assert ops.simulate_crash() == []  # nothing was left undurable
    restarted = ChunkStore(tmp_path)
    assert restarted.read(NEW_ID) == NEW_DATA
    assert_earlier_chunks_intact(restarted)


class SkipsFsync(CrashSimulatingFileOps):
    """A store bug: acknowledges without fsyncing the chunk's bytes."""

    def fsync(self, fd: int) -> None:
        return None


def test_crash_switch_drops_bytes_acknowledged_without_fsync(tmp_path: Path) -> None:
    ops = SkipsFsync()
    store = ChunkStore(tmp_path, file_ops=ops)
    store.put(NEW_ID, NEW_DATA)
    assert store.read(NEW_ID) == NEW_DATA  # looks fine until the power goes
    lost = ops.simulate_crash()
    assert store.path_of(NEW_ID) in lost
    restarted = ChunkStore(tmp_path)
    with pytest.raises(ChunkCorrupt):  # the name survived (dir fsynced), the bytes did not
        restarted.read(NEW_ID)


def test_crash_switch_forgets_unsynced_bytes_and_names(tmp_path: Path) -> None:
    ops = CrashSimulatingFileOps()
    synced = str(tmp_path / "synced")
    fd = ops.create(synced)
    ops.pwrite(fd, b"durable", 0)
    ops.fsync(fd)
    ops.fsync_dir(str(tmp_path))
    ops.pwrite(fd, b" and lost", 7)
    ops.close(fd)
    unsynced_name = str(tmp_path / "never-dir-synced")
    fd = ops.create(unsynced_name)
    ops.pwrite(fd, b"x", 0)
    ops.fsync(fd)
    ops.close(fd)

    ops.simulate_crash()
    assert Path(synced).read_bytes() == b"durable"
    assert not os.path.exists(unsynced_name)


def test_enospc_at_fsync_is_no_space_and_harms_nothing(tmp_path: Path) -> None:
    ops = CrashSimulatingFileOps()
    store = store_with_earlier_chunks(tmp_path, ops)
    ops.crash_before("fsync", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(NoSpace):
        store.put(NEW_ID, NEW_DATA)
    assert temp_files(tmp_path) == []
    assert not store.has(NEW_ID)
    assert_earlier_chunks_intact(store)
