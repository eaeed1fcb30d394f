"""The WAL: round trips, torn tails cut at every offset, corruption refused,
group commit, segments."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dfs.paxos.wal import (
    FRAME_HEADER,
    SEGMENT_HEADER,
    Wal,
    WalCorruption,
    encode_frame,
    iter_segment_paths,
)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def write_batches(directory: Path, batches: list[list[bytes]], **kw: int) -> Wal:
    wal, _ = Wal.open(directory, **kw)
    for batch in batches:
        await wal.wait_durable(wal.append(batch))
    return wal


def payloads(wal_dir: Path) -> list[bytes]:
    _, records = Wal.open(wal_dir)
    return [payload for _, payload in records]


def test_round_trip_and_indices(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await write_batches(tmp_path, [[b"a", b"bb"], [b""], [b"x" * 100_000]])
        assert wal.durable_index == 4
        await wal.close()
        wal2, records = Wal.open(tmp_path)
        assert records == [(1, b"a"), (2, b"bb"), (3, b""), (4, b"x" * 100_000)]
        assert wal2.next_index == 5
        await wal2.wait_durable(wal2.append([b"more"]))
        await wal2.close()

    run(scenario())
    assert payloads(tmp_path)[-1] == b"more"


def test_torn_tail_is_cut_at_every_byte_offset(tmp_path: Path) -> None:
    durable = [b"first", b"second"]
    lost = [b"third-record", b"fourth"]
    frame_len = len(encode_frame(lost))
    for keep in range(1, frame_len):
        wal_dir = tmp_path / f"k{keep}"

        async def scenario(wal_dir: Path = wal_dir, keep: int = keep) -> None:
            wal = await write_batches(wal_dir, [durable])
            wal.append(lost)
            wal.simulate_crash(keep_unsynced_bytes=keep)

        run(scenario())
        assert payloads(wal_dir) == durable, f"torn at byte {keep}"

        async def append_after(wal_dir: Path = wal_dir) -> None:
            wal, _ = Wal.open(wal_dir)
            await wal.wait_durable(wal.append([b"after"]))
            await wal.close()

        run(append_after())
        assert payloads(wal_dir) == [*durable, b"after"], f"append after cut at byte {keep}"


def test_zero_filled_tail_is_cut(tmp_path: Path) -> None:
    async def scenario() -> None:
        await (await write_batches(tmp_path, [[b"kept"]])).close()

    run(scenario())
    (segment,) = iter_segment_paths(tmp_path)
    with segment.open("ab") as stream:
        stream.write(b"\0" * 4096)
    assert payloads(tmp_path) == [b"kept"]


def test_corruption_before_the_tail_refuses_to_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        await (await write_batches(tmp_path, [[b"one" * 10], [b"two" * 10]])).close()

    run(scenario())
    (segment,) = iter_segment_paths(tmp_path)
    raw = bytearray(segment.read_bytes())
    flip_at = SEGMENT_HEADER.size + FRAME_HEADER.size + 12  # inside the first frame's body
    raw[flip_at] ^= 0xFF
    segment.write_bytes(bytes(raw))
    with pytest.raises(WalCorruption) as refused:
        Wal.open(tmp_path)
    message = str(refused.value)
    assert segment.name in message and f"offset {SEGMENT_HEADER.size}" in message


def test_not_a_segment_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await write_batches(tmp_path, [[b"a"]], segment_bytes=64)
        await wal.wait_durable(wal.append([b"b" * 100]))
        await wal.close()

    run(scenario())
    first = next(iter_segment_paths(tmp_path))
    first.write_bytes(b"garbage" * 10)
    with pytest.raises(WalCorruption, match="not a dfs WAL segment"):
        Wal.open(tmp_path)


def test_group_commit_covers_concurrent_appends(tmp_path: Path) -> None:
    writers = 500

    async def scenario() -> tuple[int, list[int]]:
        wal, _ = Wal.open(tmp_path)

        async def one(i: int) -> int:
            index = wal.append([f"record-{i}".encode()])
            await wal.wait_durable(index)
            # durable before it returns: the flush covering it has completed
            assert wal.durable_index >= index
            return index

        indices = await asyncio.gather(*(one(i) for i in range(writers)))
        fsyncs = wal.fsync_count
        await wal.close()
        return fsyncs, list(indices)

    fsyncs, indices = run(scenario())
    assert sorted(indices) == list(range(1, writers + 1))
    assert fsyncs <= writers // 10, f"{fsyncs} fsyncs for {writers} appends: no grouping"
    assert sorted(payloads(tmp_path)) == sorted(f"record-{i}".encode() for i in range(writers))


def test_segments_roll_and_old_ones_drop(tmp_path: Path) -> None:
    async def scenario() -> Wal:
        return await write_batches(tmp_path, [[bytes([i]) * 300] for i in range(10)],
                                   segment_bytes=1000)

    wal = run(scenario())
    assert len(list(iter_segment_paths(tmp_path))) >= 3
    dropped = wal.drop_before(7)
    assert dropped
    _, records = Wal.open(tmp_path)
    indices = [i for i, _ in records]
    assert indices[-1] == 10 and 7 in indices and indices == list(range(indices[0], 11))
    assert all(payload == bytes([i - 1]) * 300 for i, payload in records)


def test_reset_restarts_numbering(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal = await write_batches(tmp_path, [[b"a", b"b"]])
        wal.reset(first_index=100)
        await wal.wait_durable(wal.append([b"c"]))
        await wal.close()

    run(scenario())
    _, records = Wal.open(tmp_path)
    assert records == [(100, b"c")]


def test_missing_middle_segment_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        await (await write_batches(tmp_path, [[b"x" * 300] for _ in range(6)],
                                   segment_bytes=400)).close()

    run(scenario())
    segments = list(iter_segment_paths(tmp_path))
    assert len(segments) >= 3
    segments[1].unlink()
    with pytest.raises(WalCorruption, match="segment is missing"):
        Wal.open(tmp_path)


def test_records_without_sync_wait_for_the_next_fsync(tmp_path: Path) -> None:
    async def scenario() -> None:
        wal, _ = Wal.open(tmp_path)
        hint = wal.append([b"hint"], sync=False)
        await asyncio.sleep(0.05)
        assert wal.durable_index < hint and wal.fsync_count == 0  # nothing written for it
        needed = wal.append([b"needed"])
        await wal.wait_durable(needed)
        assert wal.durable_index == needed and wal.fsync_count == 1  # one fsync for both
        lone = wal.append([b"lone hint"], sync=False)
        await asyncio.wait_for(wal.wait_durable(lone), 5)  # a waiter asks for the write
        assert wal.fsync_count == 2
        wal.append([b"left at close"], sync=False)
        await asyncio.wait_for(wal.close(), 5)

    run(scenario())
    assert payloads(tmp_path) == [b"hint", b"needed", b"lone hint", b"left at close"]
