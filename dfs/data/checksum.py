"""Chunk checksums: xxh64 of every 64 KiB block and of the whole chunk, and the header
that records them in front of a stored chunk.

Owns the block size, the hash arithmetic and the header format, for the store, the
scrubber and the client. Pure: it must never touch files, clocks or the network.

Header (little-endian): magic "DFSC", u16 format version, u16 reserved, u64 chunk id,
u64 length, u64 xxh64 of the whole chunk, u32 block count, one u64 xxh64 per block,
then a u64 xxh64 of all the header bytes before it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import xxhash

BLOCK_SIZE = 64 * 1024  # a read verifies whole blocks, so this bounds read amplification
# Larger than any block of a file (default 4 MiB) or a merged chunk, small enough that
# one chunk's read buffer never strains a server.
MAX_CHUNK_LENGTH = 64 * 1024 * 1024
MAGIC = b"DFSC"
FORMAT_VERSION = 1

_HEADER_PREFIX = struct.Struct("<4sHHQQQI")  # magic, version, reserved, id, length, whole, n
_CHECKSUM = struct.Struct("<Q")
HEADER_PREFIX_SIZE = _HEADER_PREFIX.size

Buffer = bytes | bytearray | memoryview


def block_count(length: int) -> int:
    """Blocks covering `length` bytes; the last one may be partial."""
    return (length + BLOCK_SIZE - 1) // BLOCK_SIZE


def block_checksum(block: Buffer) -> int:
    """xxh64 of one block."""
    return int(xxhash.xxh64_intdigest(block))


def whole_checksum(data: Buffer) -> int:
    """xxh64 of a whole chunk (the ChunkInfo / WriteChunkRequest checksum)."""
    return int(xxhash.xxh64_intdigest(data))


def block_checksums(data: Buffer) -> list[int]:
    """The checksum of every block of `data`."""
    view = memoryview(data)
    return [
        block_checksum(view[start : start + BLOCK_SIZE])
        for start in range(0, len(view), BLOCK_SIZE)
    ]


def first_bad_block(view: memoryview, first_block: int, expected: Sequence[int]) -> int | None:
    """Index (within the chunk) of the first block of `view` whose checksum differs from
    `expected`; `view` holds whole blocks from `first_block` on (the last may be the
    chunk's partial tail). None when every block matches."""
    for offset in range(0, len(view), BLOCK_SIZE):
        index = first_block + offset // BLOCK_SIZE
        if block_checksum(view[offset : offset + BLOCK_SIZE]) != expected[index]:
            return index
    return None


class ChunkHasher:
    """Block and whole-chunk checksums of a chunk fed in pieces of any size."""

    def __init__(self) -> None:
        self._whole = xxhash.xxh64()
        self._partial = bytearray()  # the bytes of the block not yet complete
        self.block_sums: list[int] = []
        self.length = 0

    def update(self, piece: Buffer) -> None:
        """Feed the next bytes of the chunk."""
        view = memoryview(piece)
        self._whole.update(view)
        self.length += len(view)
        if self._partial:
            take = min(BLOCK_SIZE - len(self._partial), len(view))
            self._partial += view[:take]
            view = view[take:]
            if len(self._partial) == BLOCK_SIZE:
                self.block_sums.append(block_checksum(self._partial))
                self._partial.clear()
        whole_blocks_end = len(view) - len(view) % BLOCK_SIZE
        for start in range(0, whole_blocks_end, BLOCK_SIZE):
            self.block_sums.append(block_checksum(view[start : start + BLOCK_SIZE]))
        self._partial += view[whole_blocks_end:]

    def finish(self) -> tuple[list[int], int]:
        """(block checksums, whole checksum) of everything fed; call once, at the end."""
        if self._partial:
            self.block_sums.append(block_checksum(self._partial))
            self._partial.clear()
        return self.block_sums, int(self._whole.intdigest())


class HeaderError(ValueError):
    """A stored header is damaged or belongs to another chunk."""


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """What is known about a stored chunk before its bytes are read."""

    chunk_id: int
    length: int
    checksum: int  # xxh64 of the whole chunk
    block_sums: tuple[int, ...]

    @staticmethod
    def size_for(length: int) -> int:
        """Header bytes of a chunk of this length (the data starts here)."""
        return _HEADER_PREFIX.size + _CHECKSUM.size * (block_count(length) + 1)

    def encode(self) -> bytes:
        body = _HEADER_PREFIX.pack(
            MAGIC,
            FORMAT_VERSION,
            0,
            self.chunk_id,
            self.length,
            self.checksum,
            len(self.block_sums),
        ) + b"".join(_CHECKSUM.pack(s) for s in self.block_sums)
        return body + _CHECKSUM.pack(whole_checksum(body))

    @staticmethod
    def decode(chunk_id: int, raw: bytes) -> ChunkHeader:
        """Parse and verify the header at the start of raw (which may run past it);
        HeaderError when anything disagrees."""
        if len(raw) < _HEADER_PREFIX.size:
            raise HeaderError("shorter than a header")
        magic, version, _, stored_id, length, checksum, blocks = _HEADER_PREFIX.unpack_from(raw)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise HeaderError("bad magic or format version")
        if length > MAX_CHUNK_LENGTH or blocks != block_count(length):
            raise HeaderError("impossible length or block count")
        end = ChunkHeader.size_for(length) - _CHECKSUM.size
        if len(raw) < end + _CHECKSUM.size:
            raise HeaderError("shorter than its header")
        (stored_sum,) = _CHECKSUM.unpack_from(raw, end)
        if whole_checksum(raw[:end]) != stored_sum:
            raise HeaderError("header checksum mismatch")
        if stored_id != chunk_id:
            raise HeaderError(f"holds chunk {stored_id:016x}")
        sums = struct.unpack_from(f"<{blocks}Q", raw, _HEADER_PREFIX.size)
        return ChunkHeader(chunk_id, length, checksum, sums)


def header_length_field(raw: bytes) -> int:
    """The (unverified) length field of a header prefix, to size the full header read;
    0 when raw is too short to hold it."""
    if len(raw) < _HEADER_PREFIX.size:
        return 0
    return int(_HEADER_PREFIX.unpack_from(raw)[4])
