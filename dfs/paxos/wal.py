"""The write-ahead log of a metadata replica: append-only segments, group commit.

Owns the on-disk record format, recovery (a torn tail is cut, corruption
before the tail stops startup) and the rule that a record counts as durable
only after the fdatasync that covers it has returned. It never interprets
payloads: the driver encodes the core's records into bytes.

Layout: `DIR/<first index, 20 digits>.wal` segments. A segment starts with a
16-byte header (magic + index of its first record) followed by frames; one
frame per group commit:

    frame  = u32 body length | u64 xxh64(body) | body
    body   = record*
    record = u32 payload length | u64 xxh64(payload) | payload

Every record carries its own length and checksum; the frame checksum covers a
whole group commit, so a crash that persisted only some pages of the last
write is seen as one torn frame and cut whole. A bad frame followed by a good
one cannot be a torn write (the good one was written only after the bad one's
fsync returned): that is corruption, and startup stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

log = logging.getLogger(__name__)

MAGIC = b"DFSWAL01"
SEGMENT_HEADER = struct.Struct("<8sQ")
FRAME_HEADER = struct.Struct("<IQ")
RECORD_HEADER = struct.Struct("<IQ")
SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# A frame larger than this is treated as a garbage length, not a real frame.
MAX_FRAME_BYTES = 1 << 31


class WalCorruption(Exception):
    """Corruption before the tail of the log: refusing to start is the only safe answer."""


def checksum(data: bytes | memoryview) -> int:
    return xxhash.xxh64_intdigest(data)


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def encode_frame(payloads: list[bytes]) -> bytes:
    parts = []
    for payload in payloads:
        parts.append(RECORD_HEADER.pack(len(payload), checksum(payload)))
        parts.append(payload)
    body = b"".join(parts)
    return FRAME_HEADER.pack(len(body), checksum(body)) + body


def decode_body(body: bytes, where: str) -> list[bytes]:
    """Records of a frame whose checksum already matched; a bad record here is corruption."""
    records, offset = [], 0
    while offset < len(body):
        length, expected = RECORD_HEADER.unpack_from(body, offset)
        start = offset + RECORD_HEADER.size
        payload = body[start : start + length]
        if len(payload) != length or checksum(payload) != expected:
            raise WalCorruption(f"{where}: record at body offset {offset} fails its checksum")
        records.append(payload)
        offset = start + length
    return records


@dataclass
class Segment:
    path: Path
    first_index: int
    record_count: int = 0
    size: int = 0  # bytes of valid data (header + whole frames)

    @property
    def next_index(self) -> int:
        return self.first_index + self.record_count


@dataclass
class Recovered:
    """What a WAL directory held: its segments and every valid record, in order."""

    segments: list[Segment] = field(default_factory=list)
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (index, payload)
    cut_tail: str | None = None  # where a torn tail was cut, if one was


def _is_torn_tail(data: bytes, offset: int, declared_end: int) -> bool:
    """A bad frame at `offset` in the last segment is a torn tail unless a valid
    frame follows it (then the bad one was fsynced before: corruption)."""
    if declared_end >= len(data):
        return True
    rest = data[declared_end:]
    if not rest.strip(b"\0"):
        return True
    if len(rest) < FRAME_HEADER.size:
        return True
    length, expected = FRAME_HEADER.unpack_from(rest, 0)
    body = rest[FRAME_HEADER.size : FRAME_HEADER.size + length]
    return not (len(body) == length and checksum(body) == expected)


def _scan_segment(path: Path, is_last: bool, recovered: Recovered) -> Segment:
    data = path.read_bytes()
    if len(data) < SEGMENT_HEADER.size and is_last:
        # A crash right after creating the segment: nothing in it was ever durable.
        recovered.cut_tail = f"{path} at offset 0 (segment header incomplete)"
        return Segment(path, int(path.name.removesuffix(SEGMENT_SUFFIX)), 0, 0)
    if len(data) < SEGMENT_HEADER.size or data[: len(MAGIC)] != MAGIC:
        raise WalCorruption(f"{path}: offset 0: not a dfs WAL segment header")
    _, first_index = SEGMENT_HEADER.unpack_from(data, 0)
    segment = Segment(path, first_index, 0, SEGMENT_HEADER.size)
    offset = SEGMENT_HEADER.size
    while offset < len(data):
        problem = None
        declared_end = len(data) + 1
        if len(data) - offset < FRAME_HEADER.size:
            problem = "truncated frame header"
        else:
            length, expected = FRAME_HEADER.unpack_from(data, offset)
            declared_end = offset + FRAME_HEADER.size + length
            body = data[offset + FRAME_HEADER.size : declared_end]
            if length > MAX_FRAME_BYTES or len(body) != length:
                problem = "frame runs past the end of the file"
            elif checksum(body) != expected:
                problem = "frame checksum mismatch"
        if problem is not None:
            if is_last and _is_torn_tail(data, offset, declared_end):
                recovered.cut_tail = f"{path} at offset {offset} ({problem})"
                break
            raise WalCorruption(f"{path}: offset {offset}: {problem} before the end of the log")
        for payload in decode_body(body, f"{path}: frame at offset {offset}"):
            recovered.records.append((segment.next_index, payload))
            segment.record_count += 1
        offset = declared_end
        segment.size = offset
    return segment


def recover(directory: Path) -> Recovered:
    """Read every segment, check continuity, and find where a torn tail starts."""
    recovered = Recovered()
    paths = sorted(directory.glob("*" + SEGMENT_SUFFIX))
    for position, path in enumerate(paths):
        segment = _scan_segment(path, position == len(paths) - 1, recovered)
        if recovered.segments and segment.first_index != recovered.segments[-1].next_index:
            raise WalCorruption(
                f"{path}: offset 0: starts at record {segment.first_index}, expected "
                f"{recovered.segments[-1].next_index} (a segment is missing or damaged)"
            )
        recovered.segments.append(segment)
    return recovered


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Wal:
    """Append records, then await their durability; one fdatasync per group.

    `append` only buffers; a single flusher writes everything gathered since
    the previous flush as one frame and fdatasyncs it in a worker thread, so
    the event loop keeps gathering while the disk works (group commit).
    """

    def __init__(self, directory: Path, recovered: Recovered, segment_bytes: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segments = recovered.segments
        self._pending: list[bytes] = []
        self._next_index = self.segments[-1].next_index if self.segments else 1
        self.durable_index = self._next_index - 1
        self._durable_changed = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._fd: int | None = None
        self.fsync_count = 0
        self.frames_written = 0

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES, first_index: int = 1
    ) -> tuple[Wal, list[tuple[int, bytes]]]:
        """Open (creating if new) and recover; returns the WAL and every durable record.

        `first_index` is where numbering starts in an empty directory (after a
        snapshot install, the slot after the snapshot's records).
        """
        directory.mkdir(parents=True, exist_ok=True)
        recovered = recover(directory)
        if recovered.cut_tail:
            log.warning("WAL: cut a torn tail in %s", recovered.cut_tail)
            last = recovered.segments[-1]
            if last.size == 0:
                last.path.unlink()
                recovered.segments.pop()
                fsync_dir(directory)
            else:
                with last.path.open("r+b") as stream:
                    stream.truncate(last.size)
                    os.fsync(stream.fileno())
        wal = cls(directory, recovered, segment_bytes)
        if not wal.segments:
            wal._next_index = first_index
            wal.durable_index = first_index - 1
        return wal, recovered.records

    @property
    def next_index(self) -> int:
        """Index the next appended record will get."""
        return self._next_index

    @property
    def first_index(self) -> int:
        return self.segments[0].first_index if self.segments else self._next_index

    # ---------------------------------------------------------------- writing

    def append(self, payloads: list[bytes], sync: bool = True) -> int:
        """Buffer records; returns the index of the last one. Not durable yet.

        With sync=False nothing starts a write: the records wait for the next
        append that asks for one (or a wait_durable), and share its fsync.
        """
        if self._failure is not None:
            raise OSError(f"WAL is failed: {self._failure}")
        self._pending.extend(payloads)
        self._next_index += len(payloads)
        if sync:
            self._wakeup.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        return self._next_index - 1

    async def wait_durable(self, index: int) -> None:
        """Return once every record up to `index` is on disk."""
        while self.durable_index < index:
            if self._failure is not None:
                raise OSError(f"WAL write failed: {self._failure}")
            self._wakeup.set()  # records appended without sync are wanted now
            self._durable_changed.clear()
            await self._durable_changed.wait()

    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            # One turn of the event loop first: calls that already arrived append
            # their records too, and share this fsync instead of waiting for the
            # next (costs nothing when the loop is idle).
            await asyncio.sleep(0)
            self._wakeup.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, []
            last_index = self.durable_index + len(batch)
            try:
                await asyncio.to_thread(self._write_and_sync, batch, last_index)
            except BaseException as err:  # the disk failed: nothing later may claim durability
                log.error("WAL write failed: %s", err)
                self._failure = err
                self._durable_changed.set()
                return
            self.durable_index = last_index
            self._durable_changed.set()

    def _write_and_sync(self, batch: list[bytes], last_index: int) -> None:
        """Runs in a worker thread: one frame, one fdatasync."""
        first_index = last_index - len(batch) + 1
        frame = encode_frame(batch)
        segment = self._segment_for(first_index)
        assert self._fd is not None
        written = os.pwrite(self._fd, frame, segment.size)
        if written != len(frame):
            raise OSError(f"short write to {segment.path}: {written} of {len(frame)} bytes")
        os.fdatasync(self._fd)
        segment.size += len(frame)
        segment.record_count += len(batch)
        self.fsync_count += 1
        self.frames_written += 1

    def _segment_for(self, first_index: int) -> Segment:
        """The open segment, rolled over to a new file when the current one is full."""
        current = self.segments[-1] if self.segments else None
        if current is not None and current.size < self.segment_bytes and self._fd is not None:
            return current
        if current is not None and current.size < self.segment_bytes:
            self._fd = os.open(current.path, os.O_WRONLY)
            return current
        if self._fd is not None:
            os.close(self._fd)
        path = self.directory / segment_name(first_index)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.pwrite(self._fd, SEGMENT_HEADER.pack(MAGIC, first_index), 0)
        os.fdatasync(self._fd)
        fsync_dir(self.directory)
        segment = Segment(path, first_index, 0, SEGMENT_HEADER.size)
        self.segments.append(segment)
        return segment

    # ---------------------------------------------------------------- trimming

    def drop_before(self, index: int) -> list[Path]:
        """Delete segments whose records all lie below `index` (covered by a snapshot).

        The newest segment is always kept, so appends continue where they were.
        """
        dropped = []
        while len(self.segments) > 1 and self.segments[1].first_index <= index:
            segment = self.segments.pop(0)
            segment.path.unlink()
            dropped.append(segment.path)
        if dropped:
            fsync_dir(self.directory)
        return dropped

    def reset(self, first_index: int) -> None:
        """Forget every segment and start numbering at `first_index` (after a
        snapshot install that supersedes the whole log). Nothing may be pending."""
        assert not self._pending, "reset with appends in flight"
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for segment in self.segments:
            segment.path.unlink()
        self.segments = []
        fsync_dir(self.directory)
        self._next_index = first_index
        self.durable_index = first_index - 1

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    async def close(self) -> None:
        """Flush what is pending, then stop the flusher and close the file."""
        if self._pending:
            await self.wait_durable(self._next_index - 1)
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ---------------------------------------------------------------- test only

    def simulate_crash(self, keep_unsynced_bytes: int = 0, pending_frame: bool = True) -> None:
        """Test-only fault switch: what a power loss leaves behind.

        Buffered records are dropped; if `pending_frame`, the first
        `keep_unsynced_bytes` bytes of their frame are left on disk, as a torn
        write would leave them. Only bytes covered by a completed fdatasync
        survive whole. The WAL object is unusable afterwards: reopen the dir.
        """
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._pending and pending_frame and keep_unsynced_bytes > 0:
            first_index = self.durable_index + 1
            frame = encode_frame(self._pending)[:keep_unsynced_bytes]
            segment = self._segment_for(first_index)
            assert self._fd is not None
            os.pwrite(self._fd, frame, segment.size)
        self._pending = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._failure = RuntimeError("crashed (simulated)")


def iter_segment_paths(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob("*" + SEGMENT_SUFFIX))
