"""Chunk checksums: xxh64 of every 64 KiB block, and of the whole chunk.

Owns the block size and the hash arithmetic, for the store, the scrubber and the
client. Pure: it must never touch files, clocks or the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

BLOCK_SIZE = 64 * 1024  # a read verifies whole blocks, so this bounds read amplification

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
