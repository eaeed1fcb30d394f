"""Chunk store: round trips, range reads, verification, listing, deletes, conflicts."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import xxhash

from dfs.data.checksum import BLOCK_SIZE, ChunkHasher, block_checksums, block_count
from dfs.data.store import (
    ChunkConflict,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStore,
    ChunkStoreError,
    InvalidRange,
    UploadMismatch,
)

FOUR_MIB = 4 * 1024 * 1024


def pattern(length: int, seed: int = 0) -> bytes:
    """Seeded random bytes: a shifted or misplaced range cannot pass for the right one."""
    return random.Random(seed).randbytes(length)


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(tmp_path / "data")


def flip_byte(store: ChunkStore, chunk_id: int, offset_in_chunk: int) -> None:
    """Flip one bit of a stored chunk's data (the data ends the file)."""
    path = store.path_of(chunk_id)
    length = store.stat(chunk_id).length
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(os.path.getsize(path) - length + offset_in_chunk)
        original = chunk_file.read(1)
        chunk_file.seek(-1, os.SEEK_CUR)
        chunk_file.write(bytes([original[0] ^ 0x01]))


@pytest.mark.parametrize(
    "length", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, FOUR_MIB], ids=str
)
def test_round_trip(store: ChunkStore, length: int) -> None:
    data = os.urandom(length)
    stat = store.put(7, data)
    assert (stat.chunk_id, stat.length, stat.checksum) == (7, length, xxhash.xxh64_intdigest(data))
    assert store.read(7) == data
    assert b"".join(store.iter_read(7, piece_size=3 * BLOCK_SIZE)) == data
    assert store.verify(7)


def test_streamed_upload_in_odd_pieces_matches_one_shot(store: ChunkStore) -> None:
    data = pattern(3 * BLOCK_SIZE + 12345)
    with store.begin_write(11, len(data)) as writer:
        for start in range(0, len(data), 40_000):
            writer.write(data[start : start + 40_000])
        stat = writer.commit(xxhash.xxh64_intdigest(data))
    assert stat.checksum == xxhash.xxh64_intdigest(data)
    assert store.read(11) == data


@pytest.mark.parametrize(
    "offset, length",
    [
        (0, 1),
        (1, 100),
        (BLOCK_SIZE - 3, 7),  # straddles a block boundary
        (12345, 3 * BLOCK_SIZE + 17),
        (5 * BLOCK_SIZE, BLOCK_SIZE),  # exactly one aligned block
        (FOUR_MIB - 10, 10),  # the tail
        (FOUR_MIB, 0),  # empty read at the end
        (777, FOUR_MIB - 777),  # to the end from an unaligned start
    ],
)
def test_range_reads_at_unaligned_offsets(store: ChunkStore, offset: int, length: int) -> None:
    data = pattern(FOUR_MIB)
    store.put(3, data)
    assert store.read(3, offset, length) == data[offset : offset + length]
    pieces = list(store.iter_read(3, offset, length, piece_size=2 * BLOCK_SIZE))
    assert b"".join(pieces) == data[offset : offset + length]


def test_range_outside_the_chunk_is_refused(store: ChunkStore) -> None:
    store.put(3, b"x" * 100)
    with pytest.raises(InvalidRange):
        store.read(3, 50, 51)
    with pytest.raises(InvalidRange):
        store.read(3, 101)


CORRUPT_LENGTH = 5 * BLOCK_SIZE + 1000  # five whole blocks and a partial last one


@pytest.mark.parametrize("block", range(block_count(CORRUPT_LENGTH)))
def test_flipped_byte_in_any_block_is_detected(store: ChunkStore, block: int) -> None:
    data = pattern(CORRUPT_LENGTH)
    store.put(9, data)
    block_start = block * BLOCK_SIZE
    flip_byte(store, 9, min(block_start + 777, CORRUPT_LENGTH - 1))
    with pytest.raises(ChunkCorrupt, match="block"):
        store.read(9)
    assert store.repair_queue() == [9]
    assert not store.verify(9)
    # A range that does not touch the bad block still reads, verified.
    if block > 0:
        assert store.read(9, 0, block_start) == data[:block_start]
    with pytest.raises(ChunkCorrupt):
        store.read(9, block_start, 1)


def test_damaged_header_or_truncated_file_is_corrupt(store: ChunkStore) -> None:
    store.put(1, pattern(BLOCK_SIZE * 2))
    store.put(2, pattern(BLOCK_SIZE * 2))
    with open(store.path_of(1), "r+b") as chunk_file:
        chunk_file.seek(30)  # inside the length / checksum fields
        chunk_file.write(b"\xff")
    os.truncate(store.path_of(2), os.path.getsize(store.path_of(2)) - 1)
    for chunk_id in (1, 2):
        with pytest.raises(ChunkCorrupt):
            store.read(chunk_id)
    assert sorted(store.repair_queue()) == [1, 2]
    assert store.list_chunks() == []  # unverifiable chunks are not offered to peers


def test_repair_rewrite_replaces_a_corrupt_copy(store: ChunkStore) -> None:
    data = pattern(BLOCK_SIZE * 2)
    store.put(4, data)
    flip_byte(store, 4, 10)
    assert not store.verify(4)
    store.put(4, data)  # the repair loop fetched a good copy
    assert store.read(4) == data
    assert store.repair_queue() == []
    assert store.chunk_count == 1


def test_same_content_again_is_a_no_op_and_different_content_conflicts(
    store: ChunkStore,
) -> None:
    first = store.put(5, b"hello")
    used = store.used_bytes
    assert store.put(5, b"hello") == first
    with pytest.raises(ChunkConflict):
        store.put(5, b"world")
    assert store.read(5) == b"hello"
    assert store.used_bytes == used
    assert os.listdir(store.root / "tmp") == []


def test_upload_disagreeing_with_its_declaration_leaves_nothing(store: ChunkStore) -> None:
    with pytest.raises(UploadMismatch):
        store.put(6, b"abc", checksum=xxhash.xxh64_intdigest(b"abd"))
    writer = store.begin_write(6, 10)
    writer.write(b"12345")
    with pytest.raises(UploadMismatch):
        writer.commit()
    writer = store.begin_write(6, 3)
    with pytest.raises(UploadMismatch):
        writer.write(b"1234")
    with pytest.raises(ChunkStoreError):
        writer.write(b"1")  # the upload is over
    assert not store.has(6)
    assert os.listdir(store.root / "tmp") == []
    with pytest.raises(ChunkNotFound):
        store.read(6)


def test_list_pages_in_id_order_with_stats(store: ChunkStore) -> None:
    ids = [2**63 + 5, 1, 300, 256, 2**40, 65536 + 1]  # spread over fan-out dirs
    for chunk_id in ids:
        store.put(chunk_id, chunk_id.to_bytes(8, "little"))
    pages: list[int] = []
    start = 0
    while page := store.list_chunks(start, limit=4):
        pages += [stat.chunk_id for stat in page]
        start = page[-1].chunk_id + 1
        assert all(stat.length == 8 and stat.mtime_ns > 0 for stat in page)
    assert pages == sorted(ids)
    assert store.chunk_ids(257, 2) == [300, 65537]
    assert store.chunk_count == len(ids)


def test_delete_stat_and_accounting(store: ChunkStore) -> None:
    store.put(1, b"a" * 1000)
    store.put(2, b"b" * 3000)
    sizes = {chunk_id: os.path.getsize(store.path_of(chunk_id)) for chunk_id in (1, 2)}
    assert store.used_bytes == sizes[1] + sizes[2] > 4000
    assert store.delete(1) is True
    assert store.delete(1) is False
    assert store.used_bytes == sizes[2]
    assert not os.path.exists(store.path_of(1))
    with pytest.raises(ChunkNotFound):
        store.stat(1)
    assert store.stat(2).length == 3000
    assert store.chunk_count == 1


def test_reopen_finds_every_chunk_and_the_same_figures(store: ChunkStore) -> None:
    for chunk_id in range(20):
        store.put(chunk_id * 997, pattern(chunk_id * 1000, seed=chunk_id))
    reopened = ChunkStore(store.root)
    assert reopened.chunk_ids(0, 100) == store.chunk_ids(0, 100)
    assert reopened.used_bytes == store.used_bytes
    assert reopened.read(19 * 997) == pattern(19 * 1000, seed=19)


def test_stray_files_in_the_tree_are_ignored(store: ChunkStore) -> None:
    store.put(1, b"x")
    stray = Path(store.path_of(1)).parent / "notes.txt"
    stray.write_text("not a chunk")
    assert ChunkStore(store.root).chunk_ids() == [1]


def test_hasher_matches_one_shot_checksums() -> None:
    data = pattern(3 * BLOCK_SIZE + 5)
    hasher = ChunkHasher()
    for start in range(0, len(data), 1000):
        hasher.update(data[start : start + 1000])
    block_sums, whole = hasher.finish()
    assert block_sums == block_checksums(data)
    assert whole == xxhash.xxh64_intdigest(data)


def test_header_longer_than_the_first_read_is_read_whole(
    store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Big chunks have headers past the first read; shrink that read rather than
    # writing a 32 MiB chunk.
    import dfs.data.store as store_module

    monkeypatch.setattr(store_module, "_HEADER_READ_GUESS", 64)
    data = pattern(20 * BLOCK_SIZE + 3)
    store.put(8, data)
    assert store.read(8, 5 * BLOCK_SIZE + 1, 7) == data[5 * BLOCK_SIZE + 1 : 5 * BLOCK_SIZE + 8]
    assert store.stat(8).length == len(data)


def test_concurrent_uploads_from_threads(store: ChunkStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def upload(chunk_id: int) -> int:
        return store.put(chunk_id, pattern(1000 + chunk_id, seed=chunk_id)).length

    with ThreadPoolExecutor(max_workers=8) as pool:
        # Ids 0..39 once each, and id 5 seven more times (retries racing each other).
        lengths = list(pool.map(upload, [*range(40), *[5] * 7]))
    assert lengths[:40] == [1000 + i for i in range(40)]
    assert store.chunk_ids(0, 100) == list(range(40))
    assert all(store.read(i) == pattern(1000 + i, seed=i) for i in range(40))
    assert os.listdir(store.root / "tmp") == []
    assert store.used_bytes == sum(os.path.getsize(store.path_of(i)) for i in range(40))


def test_header_round_trips_and_refuses_another_chunks_header() -> None:
    from dfs.data.checksum import ChunkHeader, HeaderError

    data = pattern(2 * BLOCK_SIZE + 1)
    header = ChunkHeader(42, len(data), xxhash.xxh64_intdigest(data), tuple(block_checksums(data)))
    raw = header.encode() + data  # decode ignores what follows the header
    assert len(header.encode()) == ChunkHeader.size_for(len(data))
    assert ChunkHeader.decode(42, raw) == header
    with pytest.raises(HeaderError, match="holds chunk"):
        ChunkHeader.decode(43, raw)
    with pytest.raises(HeaderError, match="shorter"):
        ChunkHeader.decode(42, raw[:20])
